package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
	"github.com/vigil-k8s/vigil/notify/stdout"
	"github.com/vigil-k8s/vigil/notify/webhook"
)

func TestMain(m *testing.M) {
	// slacktest's chat.postMessage hands each message to a goroutine that
	// waits for a websocket client the tests never open.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/slack-go/slack/slacktest.(*Server).queueForWebsocket"))
}

// waitFor polls cond until it holds; the deadline only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, 20*time.Second, what, cond)
}

// env is a real JetStream with vigil's streams and buckets.
type env struct {
	t   *testing.T
	js  jetstream.JetStream
	reg *prometheus.Registry
	m   *metrics.Metrics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	return &env{t: t, js: js, reg: reg, m: metrics.New(reg)}
}

// setup is what a test dispatcher delivers to, and how.
type setup struct {
	dests  []Destination
	routes []Route
	opts   Options
}

// testSetup gives every destination a timeout and a rate limit no test
// reaches, unless it set its own, and bounds attempts and age.
func testSetup(dests []Destination, routes ...Route) *setup {
	for i := range dests {
		if dests[i].Timeout == 0 {
			dests[i].Timeout = 5 * time.Second
		}
		if dests[i].RateLimit == 0 {
			dests[i].RateLimit = 1000
		}
	}
	return &setup{dests: dests, routes: routes, opts: Options{AckWait: 10 * time.Second, MaxAttempts: 5, MaxAge: time.Hour}}
}

// run starts a dispatcher and stops it when the test ends, checking that
// Run returns nil after draining.
func (e *env) run(s *setup, opts ...func(*Options)) {
	e.t.Helper()
	stop := e.start(s, opts...)
	e.t.Cleanup(stop)
}

// start starts a dispatcher with short backoffs and fetches, then opts;
// stop cancels it and waits for Run to return.
func (e *env) start(s *setup, opts ...func(*Options)) (stop func()) {
	e.t.Helper()
	o := s.opts
	o.Backoff = backoff.Policy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: true}
	o.FetchBatch, o.FetchWait = 100, 100*time.Millisecond
	o.Metrics = e.m
	for _, f := range opts {
		f(&o)
	}
	d, err := NewDispatcher(e.js, s.dests, s.routes, o, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run returned %v after cancel, want nil", err)
			}
		})
	}
}

func (e *env) publish(alerts ...*alert.Alert) {
	e.t.Helper()
	if err := engine.PublishAlerts(context.Background(), e.js, alerts); err != nil {
		e.t.Fatal(err)
	}
}

// settled reports whether a destination's consumer has acknowledged
// everything on the stream. Its ack floor must have reached the stream's
// last message: right after a publish, the server may still report
// nothing pending, before the consumer has taken the new message in.
func (e *env) settled(dest string) func() bool {
	return func() bool {
		ctx := context.Background()
		c, err := e.js.Consumer(ctx, bus.StreamAlerts, ConsumerName(dest))
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false
		}
		st, err := e.js.Stream(ctx, bus.StreamAlerts)
		if err != nil {
			return false
		}
		si, err := st.Info(ctx)
		return err == nil && info.AckFloor.Stream >= si.State.LastSeq &&
			info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	}
}

func (e *env) counter(name, dest string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "destination" && l.GetValue() == dest {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// deadLetters reads everything on the DEAD stream for a destination.
func (e *env) deadLetters(dest string) []*nats.Msg {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.js.OrderedConsumer(ctx, bus.StreamDead, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.DeadSubject("notify", dest)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	batch, err := c.FetchNoWait(1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*nats.Msg
	for m := range batch.Messages() {
		out = append(out, &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()})
	}
	return out
}

// sink is a webhook receiver answering with a script of statuses, then 200.
type sink struct {
	srv *httptest.Server

	mu       sync.Mutex
	script   []response
	requests []request
	arrived  chan struct{}
}

type response struct {
	code       int
	retryAfter string
}

type request struct {
	at     time.Time
	header http.Header
	body   []byte
	code   int
}

func newSink(t *testing.T, script ...response) *sink {
	s := &sink{script: script, arrived: make(chan struct{}, 1000)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		resp := response{code: http.StatusOK}
		if len(s.script) > 0 {
			resp, s.script = s.script[0], s.script[1:]
		}
		s.requests = append(s.requests, request{at: time.Now(), header: r.Header.Clone(), body: body, code: resp.code})
		s.mu.Unlock()
		if resp.retryAfter != "" {
			w.Header().Set("Retry-After", resp.retryAfter)
		}
		w.WriteHeader(resp.code)
		s.arrived <- struct{}{}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) reqs() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.requests...)
}

// delivered counts, per alert ID, the successful requests that carried it.
func (s *sink) delivered(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range s.reqs() {
		if r.code != http.StatusOK {
			continue
		}
		var p webhook.Payload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("undecodable webhook body: %v", err)
		}
		for _, a := range p.Alerts {
			out[a.ID]++
		}
	}
	return out
}

// webhookDest is a webhook destination posting to url.
func webhookDest(t *testing.T, name, url string) Destination {
	return webhookWith(t, name, webhook.Config{URL: url})
}

func webhookWith(t *testing.T, name string, c webhook.Config) Destination {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	n, err := webhook.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return Destination{Name: name, Notifier: n, Batch: true}
}

// discardDest is a destination whose notifications go nowhere.
func discardDest(t *testing.T, name string) Destination {
	t.Helper()
	n, err := stdout.New(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return Destination{Name: name, Notifier: n, Batch: true}
}

func TestWebhookDeliversEveryAlertOnceSigned(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t)
	d := webhookWith(t, "siem", webhook.Config{URL: sk.srv.URL, Secret: "hmac-key", Headers: map[string]string{"X-Team": "secops"}})
	e.run(testSetup([]Destination{d}))

	alerts := alerttest.Many(50)
	e.publish(alerts...)
	waitFor(t, "all alerts acknowledged", e.settled("siem"))

	got := sk.delivered(t)
	for _, a := range alerts {
		if got[a.ID] != 1 {
			t.Errorf("alert %s delivered %d times, want once", a.ID, got[a.ID])
		}
	}
	for i, r := range sk.reqs() {
		if err := webhook.Verify("hmac-key", r.header.Get(webhook.SignatureHeader), r.body, time.Minute); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if r.header.Get("X-Team") != "secops" {
			t.Errorf("request %d lacks the custom header", i)
		}
	}
	if n := e.counter("vigil_notify_delivered_alerts_total", "siem"); n != 50 {
		t.Errorf("delivered metric = %v, want 50", n)
	}
}

func TestRetryAfterIsHonouredAndDeliveredOnce(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t, response{code: http.StatusTooManyRequests, retryAfter: "1"})
	e.run(testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "the alert acknowledged", e.settled("siem"))

	reqs := sk.reqs()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want the 429 and one retry", len(reqs))
	}
	// The backoff is 20ms; only Retry-After can explain a wait of a second.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
	if got := sk.delivered(t); got[a.ID] != 1 {
		t.Errorf("delivered %d times, want once", got[a.ID])
	}
}

func TestServerErrorIsRetriedWithBackoff(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t, response{code: 500}, response{code: 502}, response{code: 503})
	e.run(testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "the alert acknowledged", e.settled("siem"))

	reqs := sk.reqs()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 3 failures and a success", len(reqs))
	}
	if got := sk.delivered(t); got[a.ID] != 1 {
		t.Errorf("delivered %d times, want once", got[a.ID])
	}
	// Backoff doubles from 20ms with jitter in the upper half: the n-th
	// wait is at least 10ms·2^(n-1).
	for i := 1; i < len(reqs); i++ {
		min := 10 * time.Millisecond << (i - 1)
		if gap := reqs[i].at.Sub(reqs[i-1].at); gap < min {
			t.Errorf("attempt %d came %s after the previous one, want at least %s", i+1, gap, min)
		}
	}
	if n := e.counter("vigil_notify_failed_attempts_total", "siem"); n != 3 {
		t.Errorf("failed attempts metric = %v, want 3", n)
	}
	if dl := e.deadLetters("siem"); len(dl) != 0 {
		t.Errorf("%d dead letters for a delivered alert", len(dl))
	}
}

func TestClientErrorIsDeadLetteredWithoutRetry(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t, response{code: http.StatusBadRequest}, response{code: http.StatusBadRequest})
	e.run(testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "the alert settled", e.settled("siem"))
	waitFor(t, "the dead letter", func() bool { return len(e.deadLetters("siem")) == 1 })

	if n := len(sk.reqs()); n != 1 {
		t.Errorf("%d requests, want 1: a 400 is not retried", n)
	}
	dl := e.deadLetters("siem")[0]
	var got alert.Alert
	if err := json.Unmarshal(dl.Data, &got); err != nil || got.ID != a.ID {
		t.Errorf("dead letter carries %q (err %v), want alert %s", dl.Data, err, a.ID)
	}
	if r := dl.Header.Get(bus.HeaderReason); !strings.Contains(r, "400") || !strings.Contains(r, "not retryable") {
		t.Errorf("dead-letter reason %q does not say why", r)
	}
	if n := e.counter("vigil_notify_dead_letters_total", "siem"); n != 1 {
		t.Errorf("dead letters metric = %v, want 1", n)
	}
}

func TestAttemptsAreBounded(t *testing.T) {
	e := newEnv(t)
	var script []response
	for range 10 {
		script = append(script, response{code: http.StatusInternalServerError})
	}
	sk := newSink(t, script...)
	d := webhookDest(t, "siem", sk.srv.URL)
	d.MaxAttempts = 3
	e.run(testSetup([]Destination{d}))

	e.publish(alerttest.Sample())
	waitFor(t, "the dead letter", func() bool { return len(e.deadLetters("siem")) == 1 })
	waitFor(t, "the alert settled", e.settled("siem"))

	if n := len(sk.reqs()); n != 3 {
		t.Errorf("%d requests, want max_attempts = 3", n)
	}
	if r := e.deadLetters("siem")[0].Header.Get(bus.HeaderReason); !strings.Contains(r, "gave up after 3 attempts") {
		t.Errorf("dead-letter reason %q", r)
	}
}

func TestHangingDestinationDoesNotDelayAnother(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	hung := make(chan struct{}, 10)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	// Runs before slow.Close (cleanups run last-in first-out).
	t.Cleanup(func() { close(release) })
	fast := newSink(t)
	e.run(testSetup([]Destination{webhookDest(t, "slow", slow.URL), webhookDest(t, "fast", fast.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	<-hung // the slow destination is now stuck on the alert
	waitFor(t, "the fast destination to deliver", e.settled("fast"))
	if got := fast.delivered(t); got[a.ID] != 1 {
		t.Errorf("fast destination got the alert %d times", got[a.ID])
	}
	select {
	case <-release:
		t.Fatal("slow destination released early")
	default:
	}
}

// TestDestinationThatNeverAnswersIsRetried is a destination that accepts
// the connection and never answers, until it recovers: each attempt ends
// at the destination's timeout, the alert is retried with backoff and,
// once the destination answers again, delivered exactly once.
func TestDestinationThatNeverAnswersIsRetried(t *testing.T) {
	e := newEnv(t)
	const hangs = 2
	var (
		mu       sync.Mutex
		attempts int
	)
	got := newSink(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts++
		n := attempts
		mu.Unlock()
		if n <= hangs {
			// Read the request, never answer: the client gives up, not
			// the server (with the body read, the server notices).
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		got.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	d := webhookDest(t, "hangs", srv.URL)
	d.Timeout = 200 * time.Millisecond
	e.run(testSetup([]Destination{d}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "the alert to be delivered after the destination recovers", func() bool { return got.delivered(t)[a.ID] > 0 })
	waitFor(t, "the destination's consumer to settle", e.settled("hangs"))
	if n := got.delivered(t)[a.ID]; n != 1 {
		t.Errorf("alert delivered %d times, want once", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts != hangs+1 {
		t.Errorf("%d attempts, want %d (two timed out, then one delivered)", attempts, hangs+1)
	}
	if f := e.counter("vigil_notify_failed_attempts_total", "hangs"); f != hangs {
		t.Errorf("failed attempts counted %v, want %d", f, hangs)
	}
}

func TestRoutesPickDestinations(t *testing.T) {
	e := newEnv(t)
	pager, siem, chat := newSink(t), newSink(t), newSink(t)
	cfg := testSetup(
		[]Destination{webhookDest(t, "pager", pager.srv.URL), webhookDest(t, "siem", siem.srv.URL), webhookDest(t, "chat", chat.srv.URL)},
		Route{Match: Match{Severity: []string{"critical"}}, To: []string{"pager"}, Continue: true},
		Route{Match: Match{Severity: []string{"high", "critical"}}, To: []string{"siem"}},
		Route{Match: Match{}, To: []string{"chat"}},
	)
	e.run(cfg)

	crit, high, low := alerttest.Sample(), alerttest.Sample(), alerttest.Sample()
	crit.ID, crit.Severity = "crit", alert.SeverityCritical
	high.ID = "high"
	low.ID, low.Severity = "low", alert.SeverityLow
	e.publish(crit, high, low)
	for _, d := range []string{"pager", "siem", "chat"} {
		waitFor(t, d+" settled", e.settled(d))
	}
	for _, tc := range []struct {
		name string
		s    *sink
		want []string
	}{
		{"pager", pager, []string{"crit"}},
		{"siem", siem, []string{"crit", "high"}},
		{"chat", chat, []string{"low"}},
	} {
		got := tc.s.delivered(t)
		if len(got) != len(tc.want) {
			t.Errorf("%s got %v, want %v", tc.name, got, tc.want)
		}
		for _, id := range tc.want {
			if got[id] != 1 {
				t.Errorf("%s got %q %d times, want once", tc.name, id, got[id])
			}
		}
	}
}

func TestRedeliveredAlertIsNotSentAgain(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t)
	e.run(testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "first delivery", e.settled("siem"))
	// The same alert again under another MsgID, as after JetStream's
	// duplicate window or a replay: the delivery record stops it.
	msg, err := engine.AlertMsg(a)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(jetstream.MsgIDHeader, "replayed")
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay settled", func() bool {
		return e.settled("siem")() && e.counter("vigil_notify_duplicates_skipped_total", "siem") == 1
	})
	if got := sk.delivered(t); got[a.ID] != 1 {
		t.Errorf("delivered %d times, want once", got[a.ID])
	}
}

func TestAlertsOlderThanMaxAgeAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	var script []response
	for range 1000 {
		script = append(script, response{code: http.StatusServiceUnavailable})
	}
	sk := newSink(t, script...)
	d := webhookDest(t, "siem", sk.srv.URL)
	d.MaxAttempts = 1000
	cfg := testSetup([]Destination{d})
	cfg.opts.MaxAge = 300 * time.Millisecond
	e.run(cfg)

	e.publish(alerttest.Sample())
	waitFor(t, "the dead letter", func() bool { return len(e.deadLetters("siem")) == 1 })
	if r := e.deadLetters("siem")[0].Header.Get(bus.HeaderReason); !strings.Contains(r, "older than max_age") {
		t.Errorf("dead-letter reason %q", r)
	}
	if n := len(sk.reqs()); n < 2 {
		t.Errorf("%d attempts before giving up on age, want retries first", n)
	}
}

// A stopping notifier hands the alerts it holds for grouping straight back
// to JetStream, so the next one delivers them without waiting for the ack
// wait (a minute here, longer than the test may take).
func TestStopHandsHeldAlertsToTheNextReplica(t *testing.T) {
	e := newEnv(t)
	sk := newSink(t)
	route := Route{To: []string{"siem"}, GroupBy: []string{"rule"}, GroupWait: time.Hour}
	cfg := testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}, route)
	cfg.opts.AckWait = time.Minute
	stop := e.start(cfg)
	alerts := alerttest.Many(3)
	e.publish(alerts...)
	waitFor(t, "the alerts held", func() bool {
		c, err := e.js.Consumer(context.Background(), bus.StreamAlerts, ConsumerName("siem"))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 3
	})
	stop()
	if n := len(sk.reqs()); n != 0 {
		t.Fatalf("%d requests during group_wait", n)
	}

	route.GroupWait = 50 * time.Millisecond
	next := testSetup([]Destination{webhookDest(t, "siem", sk.srv.URL)}, route)
	next.opts.AckWait = time.Minute
	e.run(next)
	waitFor(t, "delivery by the next replica", e.settled("siem"))
	got := sk.delivered(t)
	for _, a := range alerts {
		if got[a.ID] != 1 {
			t.Errorf("alert %s delivered %d times", a.ID, got[a.ID])
		}
	}
	if n := len(sk.reqs()); n != 1 {
		t.Errorf("%d requests, want the group in one", n)
	}
}
