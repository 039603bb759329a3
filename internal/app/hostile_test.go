package app_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack/slacktest"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// The hostile corpus: what someone who can make API requests can put in
// the audit events vigil reads. Usernames, resource names, namespaces of
// a dry-run create, user agents and annotations set through the object are
// all theirs to choose.

// invalidUTF8 is spliced into lines after encoding, since json.Marshal
// would replace it: the apiserver's log is bytes, not necessarily UTF-8.
const invalidUTF8 = "\xff\xfe\xc3("

// utf8Marker stands for invalidUTF8 until the line is rendered.
const utf8Marker = "@@BADUTF8@@"

// injections are payloads aimed at each consumer of an alert: Slack
// mentions and links, terminal escapes and forged log lines for stdout,
// JSON breakers for webhooks.
var injections = []string{
	"<!channel>",
	"<!here>",
	"<!everyone>",
	"<@U123ABC>",
	"<#C0123|general>",
	"<https://evil.example/login|click here to re-authenticate>",
	"<mailto:x@evil.example|support>",
	"*bold* _it_ ~strike~ `code` ```block```",
	"&lt;!channel&gt; &amp; already escaped",
	"line one\n2026-03-04T10:00:00Z critical forged-rule: root deleted everything (root delete all)",
	"carriage\rreturn 2026-03-04T10:00:00Z critical forged-rule: overwritten",
	"\x1b[2J\x1b[1;31mterminal reset\x1b[0m",
	"\u2028line separator\u2029paragraph",
	"nul\x00byte and bell\x07",
	`quote " backslash \ and }]}`,
	"bad utf8 " + utf8Marker,
	"\u202egnp.exe right-to-left override",
	strings.Repeat("A", 3000) + "<!channel>",
}

// hostileEvent is an event with injections in every field an attacker
// controls. With secretGet it is a Secret read by a service account, which
// the adversarial rule set alerts on.
func hostileEvent(i int, secretGet bool) string {
	inj := func(k int) string { return injections[(i+k)%len(injections)] }
	resource, verb := "configmaps", "list"
	if secretGet {
		resource, verb = "secrets", "get"
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": fmt.Sprintf("hostile-%d", i), "stage": "ResponseComplete",
		"requestURI": "/api/v1/namespaces/x/" + resource + "/" + inj(1),
		"verb":       verb,
		"user": map[string]any{
			"username": "system:serviceaccount:" + inj(0),
			"groups":   []string{"system:serviceaccounts", inj(2)},
			"extra":    map[string]any{inj(3): []string{inj(4)}},
		},
		"impersonatedUser": map[string]any{"username": inj(5)},
		"sourceIPs":        []string{"10.0.0.1", inj(6)},
		"userAgent":        inj(7),
		"objectRef": map[string]any{"resource": resource, "namespace": inj(8), "name": inj(9),
			"apiVersion": "v1", "subresource": ""},
		"responseStatus":           map[string]any{"code": 200, "message": inj(10)},
		"annotations":              map[string]string{"note": inj(11), inj(12): inj(13)},
		"requestReceivedTimestamp": "2026-03-04T10:00:00.000000Z",
		"stageTimestamp":           "2026-03-04T10:00:00.001000Z",
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return strings.ReplaceAll(string(b), utf8Marker, invalidUTF8)
}

// plantedAttack is a clean Secret read that must alert exactly once,
// however much hostile input surrounds it.
func plantedAttack(id string) string {
	return event(id, "ResponseComplete", "system:serviceaccount:default:thief", appGroups, "get", "secrets", "default", "db-credentials", 200)
}

// nestedEvent is a ConfigMap create whose requestObject nests depth levels.
func nestedEvent(id string, depth int) string {
	var b strings.Builder
	b.WriteString(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"` + id +
		`","stage":"ResponseComplete","verb":"create","user":{"username":"deep"},` +
		`"objectRef":{"resource":"configmaps","namespace":"default","name":"deep"},"responseStatus":{"code":201},` +
		`"requestReceivedTimestamp":"2026-03-04T10:00:00.000000Z","requestObject":{"kind":"ConfigMap","data":`)
	b.WriteString(strings.Repeat(`{"a":`, depth))
	b.WriteString(`1`)
	b.WriteString(strings.Repeat(`}`, depth))
	b.WriteString(`}}`)
	return b.String()
}

// bigFieldsEvent stays under NATS' 1 MiB message limit but carries fields
// whose copies in an alert (fields plus the output built from them) would
// not fit in one.
func bigFieldsEvent(id string) string {
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": id, "stage": "ResponseComplete", "verb": "get",
		"user":                     map[string]any{"username": "system:serviceaccount:big:" + strings.Repeat("u", 200<<10)},
		"userAgent":                strings.Repeat("<!channel>", 20<<10),
		"objectRef":                map[string]any{"resource": "secrets", "namespace": "big", "name": strings.Repeat("n", 200<<10)},
		"annotations":              map[string]string{"note": strings.Repeat("x", 100<<10)},
		"responseStatus":           map[string]any{"code": 200},
		"requestReceivedTimestamp": "2026-03-04T10:00:00.000000Z",
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// rawSink is a webhook destination that keeps every body as received.
type rawSink struct {
	mu      sync.Mutex
	largest int
	counts  map[string]int
	alerts  map[string]alert.Alert
	bad     []string
	srv     *httptest.Server
}

func newRawSink(t *testing.T) *rawSink {
	s := &rawSink{counts: map[string]int{}, alerts: map[string]alert.Alert{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil || !json.Valid(b) || !utf8.Valid(b) {
			s.bad = append(s.bad, fmt.Sprintf("err %v, valid JSON %v, valid UTF-8 %v: %.200q", err, json.Valid(b), utf8.Valid(b), b))
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		var body struct {
			Alerts []alert.Alert `json:"alerts"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			s.bad = append(s.bad, err.Error())
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		s.largest = max(s.largest, len(b))
		for _, a := range body.Alerts {
			s.counts[a.ID]++
			s.alerts[a.ID] = a
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *rawSink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// waitFor waits until every id has been delivered at least once.
func (s *rawSink) waitFor(t *testing.T, timeout time.Duration, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.snapshot()
		var missing []string
		for _, id := range ids {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(missing) > 10 {
				missing = append(missing[:10], "...")
			}
			t.Fatalf("%d alerts not delivered within %s: %v", len(missing), timeout, missing)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// slackHooks is slacktest's Slack with the incoming-webhook endpoint and
// chat.postMessage (bot token) recording each message.
type slackHooks struct {
	*slacktest.Server
	mu     sync.Mutex
	bodies [][]byte // incoming webhook bodies
	posts  [][]byte // chat.postMessage forms, as one JSON object
}

func newSlackHooks(t *testing.T) *slackHooks {
	t.Helper()
	s := &slackHooks{}
	s.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/services/", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.bodies = append(s.bodies, b)
			s.mu.Unlock()
			_, _ = io.WriteString(w, "ok")
		})
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			// blocks and attachments are JSON inside the form; decode them
			// so that the check sees their text, not \u003c escapes.
			form := map[string]any{}
			for k := range r.PostForm {
				v := r.PostForm.Get(k)
				var j any
				if json.Unmarshal([]byte(v), &j) == nil {
					form[k] = j
				} else {
					form[k] = v
				}
			}
			b, _ := json.Marshal(form)
			s.mu.Lock()
			s.posts = append(s.posts, b)
			s.mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": "1.000"})
		})
	})
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *slackHooks) hookURL() string { return s.GetAPIURL() + "services/T000/B000/XXXXXXXX" }

func (s *slackHooks) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

func (s *slackHooks) allPosts() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.posts...)
}

// liveSlackMarkup finds what Slack would turn into a notification or a
// link in a message's text: "<!", "<@", "<#" and "<http"/"<mailto" openers.
// JSON encoding hides them as \u003c, so the check runs on decoded strings.
func liveSlackMarkup(body []byte) []string {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var found []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			for _, bad := range []string{"<!", "<@", "<#", "<http", "<mailto"} {
				if i := strings.Index(x, bad); i >= 0 {
					found = append(found, fmt.Sprintf("%s: %q", path, x[i:min(len(x), i+40)]))
				}
			}
		}
	}
	walk("", v)
	return found
}

// slackText is every string of a Slack message, decoded, joined.
func slackText(body []byte) string {
	var v any
	_ = json.Unmarshal(body, &v)
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			b.WriteString(x)
			b.WriteByte('\n')
		}
	}
	walk(v)
	return b.String()
}

// heapPeak samples the Go heap until stopped and keeps two peaks: the heap
// in use (live objects plus garbage not yet collected, which the garbage
// collector lets grow to about twice the live heap) and the live heap as
// the last collection measured it. Neither depends on how fast the machine
// is.
type heapPeak struct {
	stop      chan struct{}
	done      chan struct{}
	peak      uint64
	livePeak  uint64
	liveEvery []metrics.Sample
}

func watchHeap() *heapPeak {
	// Garbage left by an earlier test is not this one's to answer for.
	runtime.GC()
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{}),
		liveEvery: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	go func() {
		defer close(h.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapInuse)
			metrics.Read(h.liveEvery)
			if v := h.liveEvery[0].Value; v.Kind() == metrics.KindUint64 {
				h.livePeak = max(h.livePeak, v.Uint64())
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// Peak stops sampling and returns the largest heap in use and the largest
// live heap seen.
func (h *heapPeak) Peak() (inUse, live uint64) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	return h.peak, h.livePeak
}

// patternReader yields n bytes of a repeated pattern without holding them,
// so that the test's own memory does not mask the receiver's.
type patternReader struct {
	pattern []byte
	n, off  int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.off < r.n {
		c := copy(p[k:min(len(p), k+int(r.n-r.off))], r.pattern[r.off%int64(len(r.pattern)):])
		k += c
		r.off += int64(c)
	}
	return k, nil
}

// loris opens a connection that sends a request a byte at a time, forever,
// and reports when the server closes it.
type loris struct {
	conn   net.Conn
	closed chan struct{}
}

func startLoris(t *testing.T, addr string, head string, drip string) *loris {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &loris{conn: c, closed: make(chan struct{})}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		// The server answering (408) or closing both end the request; a
		// read returns either way.
		_, _ = bufio.NewReader(c).ReadString(0)
		close(stop)
	})
	go func() {
		defer close(l.closed)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				wg.Wait()
				return
			case <-tk.C:
			}
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, string(drip[i%len(drip)]))
		}
	}()
	return l
}

// gzipBomb is a gzip stream of n zero bytes.
func gzipBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(zw, &patternReader{pattern: make([]byte, 64<<10), n: n}); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
