package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
)

// The adversarial suite replays a hostile corpus through the whole
// pipeline — file tail and webhook receiver, embedded JetStream, rule
// workers, Slack, webhook and stdout destinations — and checks what an
// operator relies on when the people being watched write the input.
// SECURITY.md lists the figures it checks.

// heapBound is the most Go heap the process may hold while it is fed
// oversized, deeply nested and flooding input. The tests hold the live heap
// to half of it: with the default GOGC the heap in use, garbage included,
// stays within about twice the live heap, and how much garbage is around
// at a given moment depends on when the collector last ran.
const heapBound = 256 << 20

// maxJSONDepth is encoding/json's nesting limit, counted from the value it
// decodes.
const maxJSONDepth = 10_000

const advRules = `
rules:
  - id: adv-secret-read
    title: Secret read by a service account
    severity: high
    condition: >
      event.objectRef.resource == "secrets" && event.verb == "get" &&
      event.user.username.startsWith("system:serviceaccount:")
    output: >
      "%s read secret %s/%s with %s (%s)".format([event.user.username,
      event.objectRef.namespace, event.objectRef.name, event.userAgent,
      event.annotations[?"note"].orValue("")])
  - id: adv-deep-configmap
    title: ConfigMap created
    severity: medium
    condition: >
      event.objectRef.resource == "configmaps" && event.verb == "create" &&
      event.requestObject.?kind.orValue("") == "ConfigMap"
    output: '"%s created configmap %s".format([event.user.username, event.objectRef.name])'
  - id: adv-forbidden-burst
    title: Burst of refused requests
    severity: high
    condition: event.responseStatus.code == 403
    output: '"%s was refused".format([event.user.username])'
    threshold: {count: 5, window: 5m, by: ["event.user.username"]}
`

// freeAddr is a loopback address nothing listens on, for the webhook
// receiver, whose port the App does not expose.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startOpts(t *testing.T, cfg *config.Config, logs io.Writer, opts ...app.Option) *running {
	t.Helper()
	return startRole(t, cfg, app.RoleAll, logs, opts...)
}

// startRole runs the roles of vigil in one App until the test stops it.
func startRole(t *testing.T, cfg *config.Config, roles app.Role, logs io.Writer, opts ...app.Option) *running {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := app.New(cfg, roles, logger, opts...)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), app: a}
	go func() { r.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-r.done:
		cancel()
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("not ready within 30s")
	}
	return r
}

func advConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	rulesPath := filepath.Join(dir, "rules.yaml")
	writeRules(t, rulesPath, advRules)
	cfg, err := config.Parse("adv.yaml", fmt.Appendf(nil, `
cluster: adv
data_dir: %s
default_rules: false
rules: [%s]
reload: {watch: false}
metrics: {listen: "127.0.0.1:0"}
%s`, filepath.Join(dir, "data"), rulesPath, extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func post(t *testing.T, url string, body io.Reader, header http.Header) (int, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func eventList(lines ...string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(lines, ",") + `]}`)
}

// metricNumber is a sample's value, 0 when absent.
func metricNumber(t *testing.T, body, sample string) float64 {
	t.Helper()
	v := metricValue(body, sample)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s: %v", sample, err)
	}
	return f
}

// appendHugeLine writes one line of n bytes without holding it in memory.
func appendHugeLine(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"huge-line","stage":"ResponseComplete","userAgent":"`
	if _, err := io.WriteString(f, head); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, &patternReader{pattern: []byte("<!channel>"), n: n - int64(len(head)) - 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "\"}\n"); err != nil {
		t.Fatal(err)
	}
}

// stdoutLine is what one alert looks like on stdout; anything else on its
// own line was forged by event data.
var stdoutLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (high|medium)\s+ (adv-secret-read|adv-deep-configmap): `)

// TestAdversarialCorpus feeds injection strings in every attacker-controlled
// field, invalid UTF-8, oversized lines and bodies, gzip bombs, overlong
// EventLists and deeply nested request bodies through the file tail and the
// webhook receiver at once, with attacks planted among them. Every attack
// must alert exactly once on every destination, Slack must receive no live
// mention or link, stdout no forged line, the webhook only valid JSON, and
// the heap must stay bounded.
func TestAdversarialCorpus(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	sink := newRawSink(t)
	sl := newSlackHooks(t)
	t.Setenv("VIGIL_ADV_SLACK", sl.hookURL())
	t.Setenv("VIGIL_ADV_SLACK_TOKEN", "xoxb-adversarial")
	hookAddr := freeAddr(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`
ingest:
  files: [{path: %s, poll_interval: 20ms}]
  webhook: {listen: %q, insecure: true, max_events: 1000}
destinations:
  - {name: sink, type: webhook, url: %q}
  - {name: slack, type: slack, webhook_url_env: VIGIL_ADV_SLACK, rate_limit: 1000}
  - {name: slack-bot, type: slack, token_env: VIGIL_ADV_SLACK_TOKEN, channel: "#sec", api_url: %q, rate_limit: 1000}
  - {name: console, type: stdout}
`, logPath, hookAddr, sink.srv.URL, sl.GetAPIURL()))
	var stdout logtest.Buffer
	logs := &logtest.Buffer{}
	heap := watchHeap()
	r := startOpts(t, cfg, logs, app.WithStdout(&stdout))
	stopped := false
	defer func() {
		if !stopped {
			r.stop(t)
		}
	}()
	hookURL := "http://" + hookAddr + "/audit"
	var want []string

	// File: hostile events with planted attacks between them.
	var lines []string
	for i := range 200 {
		lines = append(lines, hostileEvent(i, i%2 == 0))
		if i%2 == 0 {
			want = append(want, fmt.Sprintf("adv-secret-read/hostile-%d", i))
		}
		if i%25 == 0 {
			id := fmt.Sprintf("planted-file-%d", i)
			lines = append(lines, plantedAttack(id))
			want = append(want, "adv-secret-read/"+id)
		}
	}
	// An event whose alert would be larger than a NATS message, with an
	// attack right behind it in the same batch.
	lines = append(lines, bigFieldsEvent("big-fields"), plantedAttack("planted-after-big"))
	want = append(want, "adv-secret-read/big-fields", "adv-secret-read/planted-after-big")
	// Nesting beyond any sane object: refused at ingest, dead-lettered.
	const deepest, deepOK = 100_000, 5_000
	lines = append(lines, nestedEvent("deep-100k", deepest), plantedAttack("planted-after-deep"))
	// Nesting a rule can still read.
	lines = append(lines, nestedEvent("deep-5k", deepOK))
	want = append(want, "adv-secret-read/planted-after-deep", "adv-deep-configmap/deep-5k")
	// Under max_line_bytes but over NATS' max_payload.
	lines = append(lines, strings.Replace(plantedAttack("too-big-for-nats"), `"level"`, `"x":"`+strings.Repeat("y", 3<<19)+`","level"`, 1))
	appendLines(t, logPath, lines...)

	// A line over max_line_bytes (16 MiB by default).
	const hugeLine = 40 << 20
	appendHugeLine(t, logPath, hugeLine)
	appendLines(t, logPath, plantedAttack("planted-after-huge-line"))
	want = append(want, "adv-secret-read/planted-after-huge-line")

	// Webhook: the same corpus as batches, then bodies that must be refused.
	var items []string
	for i := 1000; i < 1100; i++ {
		items = append(items, hostileEvent(i, i%2 == 0))
		if i%2 == 0 {
			want = append(want, fmt.Sprintf("adv-secret-read/hostile-%d", i))
		}
	}
	items = append(items, plantedAttack("planted-webhook"))
	want = append(want, "adv-secret-read/planted-webhook")
	if code, err := post(t, hookURL, bytes.NewReader(eventList(items...)), nil); err != nil || code != http.StatusOK {
		t.Fatalf("hostile EventList: status %d, %v", code, err)
	}
	const bigBody = 48 << 20
	refused := func(what string, code int, err error, want int) {
		t.Helper()
		// The receiver may close the connection before the client has
		// written everything; that is a refusal too.
		if err == nil && code != want {
			t.Errorf("%s: status %d, want %d", what, code, want)
		}
	}
	code, err := post(t, hookURL, io.MultiReader(strings.NewReader(`{"kind":"EventList","items":[`),
		&patternReader{pattern: []byte(plantedAttack("in-oversized-body") + ","), n: bigBody}), nil)
	refused("48 MiB chunked body", code, err, http.StatusRequestEntityTooLarge)
	const bombBytes = 64 << 20
	bomb := gzipBomb(t, bombBytes)
	code, err = post(t, hookURL, bytes.NewReader(bomb), http.Header{"Content-Encoding": {"gzip"}})
	refused("gzip bomb", code, err, http.StatusRequestEntityTooLarge)
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = `{}`
	}
	code, err = post(t, hookURL, bytes.NewReader(eventList(tooMany...)), nil)
	refused("EventList over max_events", code, err, http.StatusRequestEntityTooLarge)
	code, err = post(t, hookURL, strings.NewReader(nestedEvent("deep-100k-webhook", deepest)), nil)
	refused("100,000-deep Event", code, err, http.StatusBadRequest)
	// Nesting beyond any sane object in one item refuses its list (and
	// keeps it as a dead letter): the JSON cannot be split safely.
	code, err = post(t, hookURL, bytes.NewReader(eventList(nestedEvent("deep-100k-item", deepest), plantedAttack("not-in-deep-list"))), nil)
	refused("EventList with a 100,000-deep item", code, err, http.StatusBadRequest)
	// An event as deep as encoding/json allows, which the apiserver can
	// write (it logs a patch body as sent), is two levels deeper inside an
	// EventList: it must not take the other events of its batch with it.
	code, err = post(t, hookURL, bytes.NewReader(eventList(nestedEvent("deep-limit-item", maxJSONDepth-2), plantedAttack("planted-beside-deep"))), nil)
	if err != nil || code != http.StatusOK {
		t.Errorf("EventList with a %d-deep item: status %d, %v; want 200", maxJSONDepth, code, err)
	}
	want = append(want, "adv-secret-read/planted-beside-deep", "adv-deep-configmap/deep-limit-item")

	sink.waitFor(t, 60*time.Second, want...)
	// Stopping leaves undelivered alerts for the next start, so wait until
	// Slack and stdout have had every one. Stdout's lines but those of an
	// alert's indented context are one per alert.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		printed := strings.Count(stdout.String(), "\n") - strings.Count(stdout.String(), "\n    ")
		if len(sl.all()) >= len(want) && len(sl.allPosts()) >= len(want) && printed >= len(want) {
			break
		}
	}
	metrics := scrape(t, "http://"+r.app.MetricsAddr().String())
	for limit, min := range map[string]float64{"max_line_bytes": 1, "max_body_bytes": 2, "max_events": 1, "alert_field_bytes": 1} {
		if got := metricNumber(t, metrics, `vigil_limit_exceeded_total{limit="`+limit+`"}`); got < min {
			t.Errorf("vigil_limit_exceeded_total{limit=%q} = %v, want >= %v", limit, got, min)
		}
	}
	// The huge line, the 100k-deep line, the NATS-oversized event and the
	// two 100k-deep bodies.
	if got := metricNumber(t, metrics, `vigil_dead_letters_total{stage="ingest"}`); got < 5 {
		t.Errorf("ingest dead letters = %v, want >= 5", got)
	}
	r.stop(t)
	stopped = true
	peak, live := heap.Peak()

	// Exactly once, nothing but the attacks.
	got := sink.snapshot()
	wantSet := map[string]bool{}
	for _, id := range want {
		wantSet[id] = true
		if got[id] != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, got[id])
		}
	}
	for id := range got {
		if !wantSet[id] {
			t.Errorf("unexpected alert %s", id)
		}
	}
	sink.mu.Lock()
	for _, b := range sink.bad {
		t.Errorf("webhook body not valid UTF-8 JSON: %s", b)
	}
	largestAlert := sink.largest
	sink.mu.Unlock()
	if big := sink.alerts["adv-secret-read/big-fields"]; !strings.HasPrefix(big.User, "system:serviceaccount:big:uuu") {
		t.Errorf("alert of the event with big fields lost its user: %.80q", big.User)
	}

	// Slack, by incoming webhook and by bot token: every alert posted, none
	// with live markup from the event.
	for via, bodies := range map[string][][]byte{"incoming webhook": sl.all(), "chat.postMessage": sl.allPosts()} {
		if len(bodies) != len(want) {
			t.Errorf("Slack %s received %d messages, want %d", via, len(bodies), len(want))
		}
		escaped := 0
		for _, b := range bodies {
			for _, bad := range liveSlackMarkup(b) {
				t.Errorf("Slack %s message carries live markup %s", via, bad)
			}
			if strings.Contains(slackText(b), "&lt;!channel&gt;") {
				escaped++
			}
		}
		if escaped == 0 {
			t.Errorf("no Slack %s message shows an escaped <!channel>: the corpus did not reach it", via)
		}
	}

	// Stdout: one well-formed line per alert, its context on indented
	// lines below it, no control characters.
	out := strings.TrimSuffix(stdout.String(), "\n")
	outLines := strings.Split(out, "\n")
	alertLines := 0
	for i, l := range outLines {
		if strings.HasPrefix(l, "    ") && i > 0 {
			continue
		}
		alertLines++
		if !stdoutLine.MatchString(l) {
			t.Errorf("stdout line not written by vigil: %.120q", l)
		}
	}
	if alertLines != len(want) {
		t.Errorf("stdout has %d alert lines, want one per alert (%d)", alertLines, len(want))
	}
	for _, l := range outLines {
		if i := strings.IndexFunc(l, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' }); i >= 0 {
			t.Errorf("stdout line has control character %q: %.120q", l[i], l)
		}
	}

	if live > heapBound/2 {
		t.Errorf("live heap peaked at %d MiB, want < %d MiB (with garbage, about %d MiB)", live>>20, heapBound>>21, heapBound>>20)
	}
	t.Logf("figures: %d alerts from %d hostile events; refused: %d MiB line, %d MiB chunked body, gzip bomb %d KiB -> %d MiB, %d-item EventList; nesting: %d levels refused, %d (line) and %d (EventList item) levels evaluated; largest webhook body %d KiB; peak heap in use %d MiB, live %d MiB",
		len(want), 300, hugeLine>>20, bigBody>>20, len(bomb)>>10, bombBytes>>20, len(tooMany), deepest, deepOK, maxJSONDepth, largestAlert>>10, peak>>20, live>>20)
}

// TestAdversarialThresholdFlood sends a refused request from each of tens of
// thousands of distinct users — one threshold group each — with a real
// burst from one user inside it. The burst alerts exactly once, no flood
// user alerts, and the heap stays bounded.
func TestAdversarialThresholdFlood(t *testing.T) {
	const flood, batch = 5_000, 500
	dir := t.TempDir()
	sink := newRawSink(t)
	hookAddr := freeAddr(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`
ingest:
  webhook: {listen: %q, insecure: true}
engine: {workers: 4}
destinations:
  - {name: sink, type: webhook, url: %q}
`, hookAddr, sink.srv.URL))
	heap := watchHeap()
	r := startOpts(t, cfg, &logtest.Buffer{})
	stopped := false
	defer func() {
		if !stopped {
			r.stop(t)
		}
	}()
	base := "http://" + r.app.MetricsAddr().String()

	start := time.Now()
	legit := 0
	for from := 0; from < flood; from += batch {
		var items []string
		for i := from; i < from+batch; i++ {
			items = append(items, event(fmt.Sprintf("flood-%d", i), "ResponseComplete", fmt.Sprintf("flood-user-%d", i), nil, "list", "secrets", "default", "", 403))
		}
		// The real burst is spread over the flood.
		if from%(flood/5) == 0 {
			items = append(items, event(fmt.Sprintf("burst-%d", legit), "ResponseComplete", "mallory", nil, "list", "secrets", "kube-system", "", 403))
			legit++
		}
		if code, err := post(t, "http://"+hookAddr+"/", bytes.NewReader(eventList(items...)), nil); err != nil || code != http.StatusOK {
			t.Fatalf("flood batch at %d: status %d, %v", from, code, err)
		}
	}
	if legit != 5 {
		t.Fatalf("planted %d burst events, want 5", legit)
	}
	total := float64(flood + legit)
	deadline := time.Now().Add(90 * time.Second)
	for metricNumber(t, scrape(t, base), "vigil_engine_events_total") < total {
		if time.Now().After(deadline) {
			t.Fatalf("engine evaluated %v of %v events within 90s", metricNumber(t, scrape(t, base), "vigil_engine_events_total"), total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// The burst's alert is published before its event is acknowledged,
	// so it is on its way; wait for it, then for anything extra.
	var burstID string
	deadline = time.Now().Add(30 * time.Second)
	for burstID == "" && time.Now().Before(deadline) {
		for id := range sink.snapshot() {
			burstID = id
		}
		time.Sleep(25 * time.Millisecond)
	}
	peak, live := heap.Peak()
	metrics := scrape(t, base)
	if got := metricNumber(t, metrics, `vigil_rule_matches_total{rule="adv-forbidden-burst"}`); got != total {
		t.Errorf("threshold rule matched %v events, want %v", got, total)
	}
	r.stop(t)
	stopped = true

	got := sink.snapshot()
	if len(got) != 1 {
		t.Fatalf("alerts %v, want exactly the one burst alert", got)
	}
	for id, n := range got {
		a := sink.alerts[id]
		if n != 1 || a.Rule != "adv-forbidden-burst" || a.User != "mallory" || a.Count != 5 {
			t.Errorf("alert %s delivered %d times: rule %s user %q count %d; want once, adv-forbidden-burst, mallory, 5", id, n, a.Rule, a.User, a.Count)
		}
	}
	if live > heapBound/2 {
		t.Errorf("live heap peaked at %d MiB under the flood, want < %d MiB (with garbage, about %d MiB)", live>>20, heapBound>>21, heapBound>>20)
	}
	t.Logf("figures: %d distinct threshold groups, %d events in %s = %.0f events/s end to end (several times slower under -race); peak heap in use %d MiB, live %d MiB",
		flood+1, int(total), elapsed.Round(time.Millisecond), total/elapsed.Seconds(), peak>>20, live>>20)
}

// TestAdversarialSlowLoris holds connections open that send their headers
// or body a byte at a time. The receiver cuts each off at read_timeout,
// and serves an honest apiserver meanwhile.
func TestAdversarialSlowLoris(t *testing.T) {
	dir := t.TempDir()
	sink := newRawSink(t)
	hookAddr := freeAddr(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`
ingest:
  webhook: {listen: %q, insecure: true, read_timeout: 1s}
destinations:
  - {name: sink, type: webhook, url: %q}
`, hookAddr, sink.srv.URL))
	r := startOpts(t, cfg, &logtest.Buffer{})
	defer r.stop(t)

	var lorises []*loris
	for range 4 {
		lorises = append(lorises, startLoris(t, hookAddr, "POST /audit HTTP/1.1\r\nHost: vigil\r\n", "X-Slow: aaaaaaaa\r\n"))
	}
	for range 4 {
		lorises = append(lorises, startLoris(t, hookAddr,
			"POST /audit HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", `{"kind":"EventList","items":[`))
	}
	if code, err := post(t, "http://"+hookAddr+"/audit", bytes.NewReader(eventList(plantedAttack("planted-during-loris"))), nil); err != nil || code != http.StatusOK {
		t.Fatalf("honest client: status %d, %v", code, err)
	}
	sink.waitFor(t, 30*time.Second, "adv-secret-read/planted-during-loris")
	// Far beyond read_timeout, far below the 30 s default it replaces.
	deadline := time.After(15 * time.Second)
	for i, l := range lorises {
		select {
		case <-l.closed:
		case <-deadline:
			t.Fatalf("slow client %d still connected after 15s; read_timeout is 1s", i)
		}
	}
	metrics := scrape(t, "http://"+r.app.MetricsAddr().String())
	if got := metricNumber(t, metrics, `vigil_limit_exceeded_total{limit="read_timeout"}`); got < 4 {
		t.Errorf(`vigil_limit_exceeded_total{limit="read_timeout"} = %v, want >= 4 (one per slow body)`, got)
	}
	t.Logf("figures: %d slow clients cut off at read_timeout 1s while an honest batch was stored", len(lorises))
}

// TestAdversarialMetricsAuth: with metrics.bearer_token_file, /metrics —
// which names rules, destinations and volumes — answers only the scraper
// holding the token, while the probes stay open to the kubelet.
func TestAdversarialMetricsAuth(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "metrics-token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-scrape-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := newRawSink(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`
destinations:
  - {name: sink, type: webhook, url: %q}
`, sink.srv.URL))
	cfg.Metrics.BearerTokenFile = tokenFile
	logs := &logtest.Buffer{}
	r := startOpts(t, cfg, logs)
	defer r.stop(t)
	base := "http://" + r.app.MetricsAddr().String()
	get := func(path, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "Bearer wrong", http.StatusUnauthorized},
		{"/metrics", "Basic czNjcmV0LXNjcmFwZS10b2tlbg==", http.StatusUnauthorized},
		{"/metrics", "Bearer s3cret-scrape-token", http.StatusOK},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
	} {
		if got := get(c.path, c.auth); got != c.want {
			t.Errorf("GET %s with %q: %d, want %d", c.path, c.auth, got, c.want)
		}
	}
	if strings.Contains(logs.String(), "s3cret-scrape-token") {
		t.Error("the metrics token appears in the logs")
	}
}
