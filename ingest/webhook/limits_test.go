package webhook

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

func item(id string) string {
	return `{"level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete","verb":"get","user":{"username":"admin"},"objectRef":{"resource":"secrets","namespace":"default","name":"db"}}`
}

func eventList(apiVersion string, items ...string) string {
	return `{"kind":"EventList","apiVersion":"` + apiVersion + `","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// noLength hides the length of a body, so that it is sent chunked.
type noLength struct{ io.Reader }

func TestBodiesAreAnsweredAsTheApiserverNeeds(t *testing.T) {
	env := newJS(t)
	m := metrics.New(prometheus.NewRegistry())
	s := runServer(t, Options{Insecure: true, MaxBodyBytes: 1 << 20, MaxEvents: 1000, Metrics: m}, env.pub, nil)
	url := "http://" + s.Addr().String() + "/audit"

	hugeItems := eventList("audit.k8s.io/v1", strings.Repeat(`{},`, 99_999)+`{}`)

	for _, tc := range []struct {
		name     string
		method   string
		encoding string
		body     io.Reader
		want     int
		wantMsg  string
	}{
		{name: "v1 EventList", body: strings.NewReader(eventList("audit.k8s.io/v1", item("a1"), item("a2"))), want: 200},
		{name: "v1beta1 EventList", body: strings.NewReader(eventList("audit.k8s.io/v1beta1", item("b1"))), want: 200},
		{name: "single Event", body: strings.NewReader(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",` + item("c1")[1:]), want: 200},
		{name: "gzip EventList", encoding: "gzip", body: bytes.NewReader(gzipped(t, eventList("audit.k8s.io/v1", item("d1")))), want: 200},
		{name: "empty EventList", body: strings.NewReader(eventList("audit.k8s.io/v1")), want: 200},
		{name: "GET", method: http.MethodGet, want: 405, wantMsg: "method GET not allowed"},
		{name: "not JSON", body: strings.NewReader(`{"kind":"EventList","items":[`), want: 400, wantMsg: "malformed body"},
		{name: "wrong kind", body: strings.NewReader(`{"kind":"Pod","apiVersion":"v1"}`), want: 400, wantMsg: `apiVersion "v1" not supported`},
		{name: "wrong kind same group", body: strings.NewReader(`{"kind":"Policy","apiVersion":"audit.k8s.io/v1"}`), want: 400, wantMsg: `body kind "Policy", want EventList`},
		{name: "unknown encoding", encoding: "br", body: strings.NewReader("x"), want: 415, wantMsg: `Content-Encoding "br" not supported`},
		{name: "too large", body: strings.NewReader(strings.Repeat(" ", 2<<20)), want: 413, wantMsg: "exceeds max_body_bytes 1048576"},
		{name: "too large chunked", body: noLength{strings.NewReader(strings.Repeat(" ", 2<<20))}, want: 413, wantMsg: "exceeds max_body_bytes 1048576"},
		{name: "gzip bomb", encoding: "gzip", body: bytes.NewReader(gzipped(t, strings.Repeat(" ", 8<<20))), want: 413, wantMsg: "decompressed body exceeds max_body_bytes"},
		{name: "truncated gzip", encoding: "gzip", body: bytes.NewReader(gzipped(t, eventList("audit.k8s.io/v1", item("e1")))[:40]), want: 400, wantMsg: "truncated"},
		{name: "not gzip", encoding: "gzip", body: strings.NewReader(eventList("audit.k8s.io/v1")), want: 400, wantMsg: "gzip"},
		{name: "100,000 items", body: strings.NewReader(hugeItems), want: 413, wantMsg: "EventList has 100000 items, more than max_events 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, url, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(msg), tc.wantMsg) {
				t.Fatalf("status %d %q, want %d containing %q", resp.StatusCode, msg, tc.want, tc.wantMsg)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
	env.expectExactlyOnce(t, map[string]bool{
		"a1/ResponseComplete": true, "a2/ResponseComplete": true, "b1/ResponseComplete": true,
		"c1/ResponseComplete": true, "d1/ResponseComplete": true,
	})
	// The body that was not JSON, kept with where it came from.
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 3 {
		t.Fatalf("DEAD holds %d messages, want 3 (the bodies that were not EventLists)", len(dead))
	}
	if src := dead[0].Headers().Get(bus.HeaderSource); src != "webhook:127.0.0.1" {
		t.Errorf("dead letter source %q, want webhook:127.0.0.1", src)
	}
	for name, c := range map[string]struct {
		got  prometheus.Collector
		want float64
	}{
		`vigil_webhook_requests_total{code="200"}`:           {m.WebhookRequests.WithLabelValues("200"), 5},
		`vigil_webhook_requests_total{code="400"}`:           {m.WebhookRequests.WithLabelValues("400"), 5},
		`vigil_webhook_requests_total{code="413"}`:           {m.WebhookRequests.WithLabelValues("413"), 4},
		`vigil_limit_exceeded_total{limit="max_events"}`:     {m.LimitExceeded.WithLabelValues("max_events"), 1},
		`vigil_limit_exceeded_total{limit="max_body_bytes"}`: {m.LimitExceeded.WithLabelValues("max_body_bytes"), 3},
	} {
		if got := value(t, c.got); got != c.want {
			t.Errorf("%s = %v, want %v", name, got, c.want)
		}
	}
}

func TestABadItemIsDeadLetteredAndTheRestOfItsBatchStored(t *testing.T) {
	env := newJS(t)
	s := runServer(t, Options{Insecure: true}, env.pub, nil)
	body := eventList("audit.k8s.io/v1", item("ok-1"), `{"auditID":"no-stage"}`, item("ok-2"))
	resp, err := http.Post("http://"+s.Addr().String()+"/", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	env.expectExactlyOnce(t, map[string]bool{"ok-1/ResponseComplete": true, "ok-2/ResponseComplete": true})
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("DEAD holds %d messages, want 1", len(dead))
	}
	if src := dead[0].Headers().Get(bus.HeaderSource); src != "webhook:127.0.0.1:items[1]" {
		t.Errorf("dead letter source %q, want webhook:127.0.0.1:items[1]", src)
	}
	if reason := dead[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "no stage") {
		t.Errorf("dead letter reason %q, want it to say the stage is missing", reason)
	}
}

// TestTooManyBadItemsRefuseTheList: up to max_bad_items items that are not
// events are dead-lettered one by one and the rest stored; one more and the
// list is refused whole (400, dead-lettered, counted), which no apiserver
// sends.
func TestTooManyBadItemsRefuseTheList(t *testing.T) {
	env := newJS(t)
	m := metrics.New(prometheus.NewRegistry())
	s := runServer(t, Options{Insecure: true, MaxBadItems: 2, Metrics: m}, env.pub, nil)
	url := "http://" + s.Addr().String() + "/"
	postList := func(items ...string) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(eventList("audit.k8s.io/v1", items...)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}
	if code, msg := postList(item("ok-1"), `{"auditID":"x1"}`, `{"auditID":"x2"}`); code != 200 {
		t.Fatalf("two bad items with max_bad_items 2: status %d %q, want 200", code, msg)
	}
	code, msg := postList(item("refused-1"), `{"auditID":"y1"}`, `{"auditID":"y2"}`, `{"auditID":"y3"}`)
	if code != 400 || !strings.Contains(msg, "more than max_bad_items 2 items are not audit events") {
		t.Fatalf("three bad items: status %d %q, want 400 naming max_bad_items", code, msg)
	}
	http.DefaultClient.CloseIdleConnections()
	env.expectExactlyOnce(t, map[string]bool{"ok-1/ResponseComplete": true})
	if n := len(env.messages(t, bus.StreamDead)); n != 3 {
		t.Errorf("DEAD holds %d messages, want 3 (two items, then the refused list)", n)
	}
	if got := value(t, m.LimitExceeded.WithLabelValues("max_bad_items")); got != 1 {
		t.Errorf(`vigil_limit_exceeded_total{limit="max_bad_items"} = %v, want 1`, got)
	}
}

// TestItemsNestedTooDeepAreDeadLettered: with max_json_depth 20 an item
// nested 30 levels (counted from the item) is dead-lettered and counted,
// the items beside it stored; a single Event body that deep is refused, and
// so is one deeper than any decoder accepts, as a depth limit.
func TestItemsNestedTooDeepAreDeadLettered(t *testing.T) {
	env := newJS(t)
	m := metrics.New(prometheus.NewRegistry())
	s := runServer(t, Options{Insecure: true, MaxJSONDepth: 20, Metrics: m}, env.pub, nil)
	url := "http://" + s.Addr().String() + "/"
	deep := `{"level":"Request","auditID":"deep","stage":"ResponseComplete","verb":"create","requestObject":` +
		strings.Repeat(`{"a":`, 29) + `1` + strings.Repeat(`}`, 29) + `}`
	resp, err := http.Post(url, "application/json", strings.NewReader(eventList("audit.k8s.io/v1", item("shallow-1"), deep, item("shallow-2"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 (the deep item dead-lettered, the rest stored)", resp.StatusCode)
	}
	resp, err = http.Post(url, "application/json", strings.NewReader(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`+deep[1:]))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "max_json_depth 20") {
		t.Fatalf("deep single Event: status %d %q, want 400 naming max_json_depth", resp.StatusCode, msg)
	}
	// Deeper than any decoder goes (10,000 levels in its requestObject):
	// refused as a depth limit too, not as malformed JSON.
	deepest := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"deepest","stage":"ResponseComplete","requestObject":` +
		strings.Repeat(`{"a":`, 10_000) + `1` + strings.Repeat(`}`, 10_000) + `}`
	resp, err = http.Post(url, "application/json", strings.NewReader(deepest))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "nested deeper than 10000 levels") {
		t.Fatalf("Event 10,001 levels deep: status %d %q, want 400 naming the depth", resp.StatusCode, msg)
	}
	env.expectExactlyOnce(t, map[string]bool{"shallow-1/ResponseComplete": true, "shallow-2/ResponseComplete": true})
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 3 {
		t.Fatalf("DEAD holds %d messages, want 3 (the item, the two refused bodies)", len(dead))
	}
	if reason := dead[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "exceeded max depth") {
		t.Errorf("dead letter reason %q, want it to say the nesting is too deep", reason)
	}
	if got := value(t, m.LimitExceeded.WithLabelValues("max_json_depth")); got != 3 {
		t.Errorf(`vigil_limit_exceeded_total{limit="max_json_depth"} = %v, want 3`, got)
	}
}

func TestSaturatedReceiverAnswers429WithRetryAfter(t *testing.T) {
	env := newJS(t)
	s := runServer(t, Options{Insecure: true, MaxConcurrent: 1}, env.pub, nil)
	url := "http://" + s.Addr().String() + "/"

	// A request whose body is still being sent holds the only slot.
	pr, pw := io.Pipe()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(url, "application/json", pr)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	body := eventList("audit.k8s.io/v1", item("slow"))
	if _, err := io.WriteString(pw, body[:20]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first request to be in flight", func() bool { return len(s.sem) == 1 })

	c := &http.Client{}
	defer c.CloseIdleConnections()
	resp, err := c.Post(url, "application/json", strings.NewReader(eventList("audit.k8s.io/v1", item("second"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: status %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	if _, err := io.WriteString(pw, body[20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-first; code != 200 {
		t.Fatalf("first request: status %d, want 200", code)
	}
	http.DefaultClient.CloseIdleConnections()
	env.expectExactlyOnce(t, map[string]bool{"slow/ResponseComplete": true})
}

func TestABodyThatNeverFinishesIsCutOffAtTheReadTimeout(t *testing.T) {
	env := newJS(t)
	s := runServer(t, Options{Insecure: true, ReadTimeout: 300 * time.Millisecond}, env.pub, nil)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n%s", eventList("audit.k8s.io/v1")[:30])
	// Never send the rest. The receiver must give up on its own; this
	// deadline only keeps a broken receiver from hanging the test.
	if err := conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil) //nolint:bodyclose // closed once err is checked
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatal("the receiver kept waiting for the body")
		}
		t.Fatalf("connection closed without an answer: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(msg), "read_timeout") {
		t.Fatalf("status %d %q, want 408 naming read_timeout", resp.StatusCode, msg)
	}
}

func TestNewRejectsUnsafeOrBrokenConfig(t *testing.T) {
	p := pkitest.New(t)
	empty := filepath.Join(t.TempDir(), "empty-token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Options
		want string
	}{
		{"no listen", Options{Insecure: true}, "listen is required"},
		{"plain HTTP not asked for", Options{Listen: "127.0.0.1:0"}, "tls.cert and tls.key are required"},
		{"TLS without authentication", Options{Listen: "127.0.0.1:0", TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile}}, "no authentication configured"},
		{"client CA without TLS", Options{Listen: "127.0.0.1:0", Insecure: true, TLS: tlsconfig.Files{ClientCA: p.CAFile}}, "client_ca needs tls.cert"},
		{"missing key", Options{Listen: "127.0.0.1:0", TLS: tlsconfig.Files{Cert: p.CertFile, ClientCA: p.CAFile}}, "must be set together"},
		{"key is not a key", Options{Listen: "127.0.0.1:0", TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.CAFile, ClientCA: p.CAFile}}, "tls.key " + p.CAFile},
		{"client CA is not PEM", Options{Listen: "127.0.0.1:0", TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: empty}}, "holds no PEM certificate"},
		{"empty token file", Options{Listen: "127.0.0.1:0", Insecure: true, BearerTokenFile: empty}, "is empty"},
		{"missing token file", Options{Listen: "127.0.0.1:0", Insecure: true, BearerTokenFile: "/nonexistent/token"}, "bearer_token_file"},
		{"negative limit", Options{Listen: "127.0.0.1:0", Insecure: true, MaxEvents: -1}, "must not be negative"},
		{"bad listen", Options{Listen: "nonsense", Insecure: true}, "listen on nonsense"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, testLogger(t))
			if err == nil {
				s.Close()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// FuzzHandler posts arbitrary bodies, plain or gzip, to the handler backed
// by a real JetStream: it must never panic, must answer one of the statuses
// the apiserver understands, and may only answer 200 for a body that is
// JSON.
func FuzzHandler(f *testing.F) {
	env := newJS(f)
	s, err := New(Options{Listen: "127.0.0.1:0", Insecure: true, MaxBodyBytes: 64 << 10, MaxEvents: 50}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	s.Close() // the handler is called directly
	h := s.handler(env.pub)

	f.Add([]byte(eventList("audit.k8s.io/v1", item("f1"), item("f2"))), false)
	f.Add([]byte(eventList("audit.k8s.io/v1beta1", item("f3"))), true)
	f.Add([]byte(`{"kind":"Event","auditID":"f4","stage":"Panic"}`), false)
	f.Add([]byte(`{"kind":"EventList","items":[{"auditID":1}]}`), false)
	f.Add([]byte(`{"kind": 0}`), true)
	f.Fuzz(func(t *testing.T, body []byte, compress bool) {
		plain := body
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if compress {
			req = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(gzipped(t, string(body))))
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if !json.Valid(plain) {
				t.Fatalf("200 for a body that is not JSON: %q", body)
			}
		case 400, 413:
			if rec.Body.Len() == 0 {
				t.Fatalf("status %d without a message", rec.Code)
			}
		default:
			t.Fatalf("status %d %q for body %q", rec.Code, rec.Body, body)
		}
	})
}

func TestEventTooLargeForNATSIsDeadLetteredAndTheBatchAccepted(t *testing.T) {
	env := newJS(t)
	s := runServer(t, Options{Insecure: true}, env.pub, nil)
	big := `{"level":"Request","auditID":"big","stage":"ResponseComplete","verb":"create","requestObject":{"data":{"x":"` + strings.Repeat("a", 2<<20) + `"}}}`
	resp, err := http.Post("http://"+s.Addr().String()+"/", "application/json", strings.NewReader(eventList("audit.k8s.io/v1", big, item("small"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200: retrying could never store the large event", resp.StatusCode)
	}
	env.expectExactlyOnce(t, map[string]bool{"small/ResponseComplete": true})
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("DEAD holds %d messages, want 1", len(dead))
	}
	if src := dead[0].Headers().Get(bus.HeaderSource); src != "webhook:127.0.0.1:items[0]" {
		t.Errorf("dead letter source %q, want webhook:127.0.0.1:items[0]", src)
	}
	if reason := dead[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "max_payload") {
		t.Errorf("dead letter reason %q should name max_payload", reason)
	}
}
