package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const routingKey = "R0123456789abcdef0123456789ABCDE" // 32 characters, as PagerDuty's are

// events is an Events API v2 endpoint that checks each request against
// the documented shape (required fields, their values and sizes; no field
// the API does not define) and answers with the next status of a script,
// then 202, with the documented bodies.
type events struct {
	*httptest.Server
	t          *testing.T
	mu         sync.Mutex
	statuses   []int
	retryAfter string
	accepted   []Event
	attempts   int
}

func newEvents(t *testing.T, statuses ...int) *events {
	e := &events{t: t, statuses: statuses}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *events) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.attempts++
	if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" {
		e.t.Errorf("%s %s, want POST /v2/enqueue", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("Content-Type %q", ct)
	}
	raw, _ := io.ReadAll(r.Body)
	ev, problems := check(raw)
	if len(problems) > 0 {
		e.t.Errorf("event not of the documented shape: %v\n%s", problems, raw)
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": problems})
		return
	}
	code := http.StatusAccepted
	if len(e.statuses) > 0 {
		code, e.statuses = e.statuses[0], e.statuses[1:]
	}
	if e.retryAfter != "" && code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	switch code {
	case http.StatusAccepted:
		e.accepted = append(e.accepted, ev)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
	case http.StatusBadRequest:
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid",
			"errors": []string{"Length of 'routing_key' is incorrect (should be 32 characters)"}})
	}
}

// check validates a trigger event as the Events API v2 reference describes
// it.
func check(raw []byte) (Event, []string) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return ev, []string{err.Error()}
	}
	var p []string
	bad := func(f string, args ...any) { p = append(p, fmt.Sprintf(f, args...)) }
	if len(raw) > MaxEventBytes {
		bad("event of %d bytes", len(raw))
	}
	if len(ev.RoutingKey) != 32 {
		bad("routing_key of %d characters", len(ev.RoutingKey))
	}
	if ev.EventAction != "trigger" {
		bad("event_action %q", ev.EventAction)
	}
	if ev.DedupKey == "" || len(ev.DedupKey) > MaxDedupKey {
		bad("dedup_key of %d characters", len(ev.DedupKey))
	}
	pl := ev.Payload
	if pl.Summary == "" || utf8.RuneCountInString(pl.Summary) > MaxSummary {
		bad("summary of %d characters", utf8.RuneCountInString(pl.Summary))
	}
	if pl.Source == "" {
		bad("no source")
	}
	if !slices.Contains([]string{"critical", "error", "warning", "info"}, pl.Severity) {
		bad("severity %q", pl.Severity)
	}
	if _, err := time.Parse(time.RFC3339, pl.Timestamp); pl.Timestamp != "" && err != nil {
		bad("timestamp %q", pl.Timestamp)
	}
	if _, ok := pl.CustomDetails.(map[string]any); pl.CustomDetails != nil && !ok {
		bad("custom_details is not an object")
	}
	return ev, p
}

func (e *events) got() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.accepted)
}

func newNotifier(t *testing.T, url string) *Notifier {
	t.Helper()
	n, err := New(Config{RoutingKey: routingKey, URL: url + "/v2/enqueue", Client: "vigil", ClientURL: "https://vigil.example", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestTriggerEvent(t *testing.T) {
	e := newEvents(t)
	n := newNotifier(t, e.URL)
	a := alerttest.Sample()
	a.RunbookURL = "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets-secretsyaml"
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	got := e.got()
	if len(got) != 1 {
		t.Fatalf("%d events accepted", len(got))
	}
	ev := got[0]
	if len(ev.Links) != 1 || ev.Links[0].Href != a.RunbookURL {
		t.Errorf("links %+v, want the runbook", ev.Links)
	}
	if ev.DedupKey != a.ID || ev.Client != "vigil" || ev.ClientURL != "https://vigil.example" {
		t.Errorf("dedup_key %q, client %q %q", ev.DedupKey, ev.Client, ev.ClientURL)
	}
	want := Payload{
		Summary:   "[HIGH] Secret read by a non-node identity: system:serviceaccount:default:app get secrets default/db",
		Source:    "prod-eu-1",
		Severity:  "error",
		Timestamp: "2024-02-19T01:13:32.195666Z",
		Component: "secrets default/db",
		Group:     "default",
		Class:     "secret-read-by-non-node",
	}
	details, _ := ev.Payload.CustomDetails.(map[string]any)
	ev.Payload.CustomDetails = nil
	if ev.Payload != want {
		t.Errorf("payload\n got %+v\nwant %+v", ev.Payload, want)
	}
	if details["user"] != a.User || details["auditID"] != a.AuditID || details["output"] != a.Output {
		t.Errorf("custom_details %v do not carry the alert", details)
	}
}

func TestSeverities(t *testing.T) {
	for vigil, pd := range map[string]string{"critical": "critical", "high": "error", "medium": "warning", "low": "warning", "info": "info"} {
		if got := Severity(vigil); got != pd {
			t.Errorf("Severity(%q) = %q, want %q", vigil, got, pd)
		}
	}
}

func TestLimits(t *testing.T) {
	e := newEvents(t)
	n := newNotifier(t, e.URL)
	a := alerttest.Sample()
	a.Output = strings.Repeat("ö", 3000)
	a.ID = a.Rule + "/" + strings.Repeat("k", 300)
	a.UserAgent = strings.Repeat("x", MaxEventBytes) // only custom_details carries it
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ev := e.got()[0]
	if c := utf8.RuneCountInString(ev.Payload.Summary); c != MaxSummary || !strings.HasSuffix(ev.Payload.Summary, "…") {
		t.Errorf("summary of %d characters", c)
	}
	if !strings.HasPrefix(ev.DedupKey, a.Rule+"/") || len(ev.DedupKey) > MaxDedupKey || ev.DedupKey != DedupKey(a.ID) {
		t.Errorf("dedup_key %q", ev.DedupKey)
	}
	details, _ := ev.Payload.CustomDetails.(map[string]any)
	if details["id"] != a.ID || !strings.Contains(fmt.Sprint(details["note"]), "removed") {
		t.Errorf("oversized custom_details became %v", details)
	}
}

func TestStatuses(t *testing.T) {
	for _, tc := range []struct {
		code       int
		retryAfter string
		wantRetry  bool
		wantWait   time.Duration
		wantText   string
	}{
		{http.StatusAccepted, "", false, 0, ""},
		{http.StatusBadRequest, "", false, 0, "Event object is invalid: Length of 'routing_key' is incorrect"},
		{http.StatusTooManyRequests, "30", true, 30 * time.Second, "429"},
		{http.StatusTooManyRequests, "", true, 0, "429"},
		{http.StatusInternalServerError, "", true, 0, "500"},
		{http.StatusBadGateway, "", true, 0, "502"},
	} {
		t.Run(fmt.Sprint(tc.code, tc.retryAfter), func(t *testing.T) {
			e := newEvents(t, tc.code)
			e.retryAfter = tc.retryAfter
			retry, err := newNotifier(t, e.URL).Notify(context.Background(), alerttest.Sample())
			if retry != tc.wantRetry || (err == nil) != (tc.wantText == "") {
				t.Fatalf("retry=%v err=%v", retry, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
			if err != nil && strings.Contains(err.Error(), routingKey) {
				t.Errorf("error shows the routing key: %v", err)
			}
			var ra interface{ RetryAfter() time.Duration }
			if tc.wantWait > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.wantWait) {
				t.Errorf("Retry-After not reported as %s: %v", tc.wantWait, err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "routing key is empty"},
		{Config{RoutingKey: routingKey, URL: "events.pagerduty.com"}, "url must be"},
		{Config{RoutingKey: routingKey, ClientURL: "ftp://x"}, "client_url must be"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}

// TestThroughThePipeline: the notify pipeline retries 429 and 500 until
// PagerDuty accepts, and dead-letters what it refuses with a 400.
func TestThroughThePipeline(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	e := newEvents(t, http.StatusTooManyRequests, http.StatusInternalServerError)
	e.retryAfter = "0"
	dests := []notify.Destination{{Name: "pager", Notifier: newNotifier(t, e.URL), RateLimit: 1000, Timeout: 5 * time.Second}}
	d, err := notify.NewDispatcher(js, dests, nil, notify.Options{
		AckWait: 10 * time.Second, MaxAttempts: 5, MaxAge: time.Hour,
		Backoff:    backoff.Policy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		FetchBatch: 10, FetchWait: 100 * time.Millisecond,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	}()

	a := alerttest.Sample()
	if err := engine.PublishAlerts(ctx, js, []*alert.Alert{a}); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 20*time.Second, "PagerDuty to accept the alert", func() bool { return len(e.got()) == 1 })
	if e.got()[0].DedupKey != a.ID {
		t.Errorf("dedup_key %q", e.got()[0].DedupKey)
	}
	e.mu.Lock()
	attempts := e.attempts
	e.statuses = []int{http.StatusBadRequest}
	e.mu.Unlock()
	if attempts != 3 {
		t.Errorf("%d attempts, want 3 (429, 500, 202)", attempts)
	}

	refused := alerttest.Many(1)[0]
	if err := engine.PublishAlerts(ctx, js, []*alert.Alert{refused}); err != nil {
		t.Fatal(err)
	}
	var dead []jetstream.Msg
	waittest.Until(t, 20*time.Second, "the refused alert to be dead-lettered", func() bool {
		dead = natstest.Messages(t, js, bus.StreamDead)
		return len(dead) == 1
	})
	if reason := dead[0].Headers().Get("Vigil-Reason"); !strings.Contains(reason, "400") || !strings.Contains(reason, "routing_key") {
		t.Errorf("dead letter reason %q", reason)
	}
	e.mu.Lock()
	attempts = e.attempts
	e.mu.Unlock()
	if len(e.got()) != 1 || attempts != 4 {
		t.Errorf("%d events accepted in %d attempts, want the first only and the 400 not retried", len(e.got()), attempts)
	}
}
