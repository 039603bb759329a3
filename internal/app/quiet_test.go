package app_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/cloudwatchtest"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/quiet"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

// byRule is what the sink received of one rule: delivery counts by id.
func (s *sink) byRule(rule string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, a := range s.alerts {
		if a.Rule == rule {
			out[id] = s.counts[id]
		}
	}
	return out
}

func (s *sink) alert(id string) alert.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alerts[id]
}

// only returns the one id of m, failing unless it was delivered once.
func only(t *testing.T, what string, m map[string]int) string {
	t.Helper()
	if len(m) != 1 {
		t.Fatalf("%s: %d alerts %v, want one", what, len(m), m)
	}
	for id, n := range m {
		if n != 1 {
			t.Errorf("%s: %s delivered %d times, want once", what, id, n)
		}
		return id
	}
	return ""
}

func quietConfig(t *testing.T, dir, sinkURL string, files ...string) *config.Config {
	t.Helper()
	var list []string
	for _, f := range files {
		list = append(list, fmt.Sprintf("{path: %s, poll_interval: 20ms}", f))
	}
	cfg, err := config.Parse("quiet.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
reload: {watch: false}
metrics: {listen: "127.0.0.1:0"}
ingest:
  silent_after: 1s
  files: [%s]
destinations:
  - {name: sink, type: webhook, url: %q}
`, filepath.Join(dir, "data"), strings.Join(list, ", "), sinkURL))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAFileThatStopsGrowingIsAnAlert: a running file source whose log
// stops growing raises audit-source-silent once, a restart during the
// silence does not raise it again, and lines appended after it raise
// audit-source-resumed once, all through the pipeline to a webhook.
func TestAFileThatStopsGrowingIsAnAlert(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	s := newSink(t)
	r := start(t, quietConfig(t, dir, s.srv.URL, logPath), &logtest.Buffer{})
	appendLines(t, logPath,
		event("q-1", "ResponseComplete", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 200))
	waittest.Until(t, 30*time.Second, "audit-source-silent", func() bool { return len(s.byRule(quiet.RuleSilent)) > 0 })
	silent := only(t, "silence", s.byRule(quiet.RuleSilent))
	a := s.alert(silent)
	if a.Severity != alert.SeverityHigh || a.Cluster != "e2e" || a.RunbookURL != quiet.RunbookURL || !strings.Contains(a.Output, "file "+logPath) {
		t.Errorf("silence alert: %+v", a)
	}

	// Restarted during the silence, with a second log that never grows:
	// once that one is alerted, the first has been checked long past its
	// interval, and must not have been alerted again.
	r.stop(t)
	otherPath := filepath.Join(dir, "other.log")
	if err := os.WriteFile(otherPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	r = start(t, quietConfig(t, dir, s.srv.URL, logPath, otherPath), logs)
	defer func() { r.stop(t) }()
	waittest.Until(t, 30*time.Second, "the second log's silence", func() bool { return len(s.byRule(quiet.RuleSilent)) > 1 })
	if n := len(s.byRule(quiet.RuleSilent)); n != 2 {
		t.Errorf("%d silences after the restart, want 2 (the first log's and the second's): %v", n, s.byRule(quiet.RuleSilent))
	}
	if s.snapshot()[silent] != 1 || strings.Contains(logs.String(), silent) {
		t.Errorf("the first silence was raised again after the restart (delivered %d times)", s.snapshot()[silent])
	}

	appendLines(t, logPath,
		event("q-2", "ResponseComplete", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 200))
	waittest.Until(t, 30*time.Second, "audit-source-resumed", func() bool { return len(s.byRule(quiet.RuleResumed)) > 0 })
	resumed := only(t, "resumption", s.byRule(quiet.RuleResumed))
	if a := s.alert(resumed); a.Severity != alert.SeverityInfo || !strings.Contains(a.Output, "file "+logPath) ||
		strings.TrimPrefix(resumed, quiet.RuleResumed) != strings.TrimPrefix(silent, quiet.RuleSilent) {
		t.Errorf("resumption %s of silence %s: %+v", resumed, silent, a)
	}
}

// TestSourcesReportLagAndLastEvent: the file and the webhook report the
// own time of the newest event they stored under the metrics the eks
// source uses.
func TestSourcesReportLagAndLastEvent(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	hookAddr := freeAddr(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`ingest:
  files: [{path: %s, poll_interval: 20ms}]
  webhook: {listen: %q, insecure: true}
`, logPath, hookAddr))
	r := start(t, cfg, &logtest.Buffer{})
	defer r.stop(t)
	base := "http://" + r.app.MetricsAddr().String()

	appendLines(t, logPath, event("m-1", "ResponseComplete", "alice", appGroups, "get", "pods", "default", "web", 200))
	ev := strings.Replace(event("m-2", "ResponseComplete", "alice", appGroups, "get", "pods", "default", "web", 200),
		"2026-03-04T10:00:00.001000Z", "2026-03-04T11:00:00.5Z", 1)
	if code, err := post(t, "http://"+hookAddr, strings.NewReader(string(eventList(ev))), http.Header{}); err != nil || code != http.StatusOK {
		t.Fatalf("webhook answered %d (%v)", code, err)
	}
	want := map[string]float64{"file": 1772618400.001, "webhook": 1772622000.5}
	for src, ts := range want {
		last := fmt.Sprintf(`vigil_ingest_last_event_timestamp_seconds{cluster="adv",source=%q}`, src)
		waittest.Until(t, 30*time.Second, last, func() bool { return metricNumber(t, scrape(t, base), last) != 0 })
		body := scrape(t, base)
		if got := metricNumber(t, body, last); got != ts {
			t.Errorf("%s = %v, want %v", last, got, ts)
		}
		lag := fmt.Sprintf(`vigil_ingest_lag_seconds{cluster="adv",source=%q}`, src)
		// Measured when the event was stored, before this scrape.
		since := time.Since(time.UnixMilli(int64(ts * 1e3))).Seconds()
		if got := metricNumber(t, body, lag); got > since || got < since-60 {
			t.Errorf("%s = %v, want the time since %v", lag, got, ts)
		}
	}

	// An older event stored after a newer one is not the newest.
	appendLines(t, logPath, strings.Replace(event("m-3", "ResponseComplete", "alice", appGroups, "get", "pods", "default", "web", 200),
		"2026-03-04T10:00:00.001000Z", "2026-03-04T09:00:00Z", 1))
	events := `vigil_ingest_events_total{cluster="adv",source="file"}`
	waittest.Until(t, 30*time.Second, "the older event stored", func() bool { return metricNumber(t, scrape(t, base), events) == 2 })
	last := `vigil_ingest_last_event_timestamp_seconds{cluster="adv",source="file"}`
	if got := metricNumber(t, scrape(t, base), last); got != want["file"] {
		t.Errorf("after an older event, %s = %v, want %v", last, got, want["file"])
	}
}

// TestABacklogAfterDowntimeIsNoSilence: lines written while vigil was down
// for longer than the interval are read at start-up, and are not a
// silence; the log going quiet after them is one, once.
func TestABacklogAfterDowntimeIsNoSilence(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	s := newSink(t)
	cfg := quietConfig(t, dir, s.srv.URL, logPath)
	r := start(t, cfg, &logtest.Buffer{})
	appendLines(t, logPath,
		event("d-1", "ResponseComplete", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 200))
	// Stored, and recorded as the log's last event on the way out.
	waittest.Until(t, 30*time.Second, "the event stored", func() bool {
		return metricNumber(t, scrape(t, "http://"+r.app.MetricsAddr().String()), `vigil_ingest_events_total{cluster="e2e",source="file"}`) == 1
	})
	r.stop(t)
	down := time.Now()
	waittest.Until(t, 30*time.Second, "downtime past the interval", func() bool { return time.Since(down) > 2*time.Second })
	appendLines(t, logPath,
		event("d-2", "ResponseComplete", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 200))

	r = start(t, cfg, &logtest.Buffer{})
	defer r.stop(t)
	waittest.Until(t, 30*time.Second, "the silence after the backlog", func() bool { return len(s.byRule(quiet.RuleSilent)) > 0 })
	only(t, "silences", s.byRule(quiet.RuleSilent))
	if a := s.byRule(quiet.RuleResumed); len(a) != 0 {
		t.Errorf("resumed without a silence alerted: %v", a)
	}
}

// TestReplicasOfAnEKSSourcePageOnce runs two ingest replicas on one log
// group: only the lease holder reads events, and the other, which stores
// none, is not a second silence. When the log group goes quiet the silence
// is delivered once, and so is its end.
func TestReplicasOfAnEKSSourcePageOnce(t *testing.T) {
	awsEnv(t)
	logs := cloudwatchtest.New()
	s := newSink(t)
	buf := &logtest.Buffer{}
	_, nats, w := startBackend(t, s, buf)
	defer w.stop(t)
	for range 2 {
		cfg, err := config.Parse("eks.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
reload: {watch: false}
%s
ingest:
  sources:
    - {type: eks, endpoint: %q, poll_interval: 20ms, overlap: 1m, start_at: beginning, silent_after: 1s}
`, filepath.Join(t.TempDir(), "data"), nats, logs.Serve(t).URL))
		if err != nil {
			t.Fatal(err)
		}
		r := startRole(t, cfg, app.RoleIngest, buf)
		defer r.stop(t)
	}

	t0 := time.Now().Add(-5 * time.Second).Truncate(time.Millisecond)
	s.waitFor(t, deletion(logs, t0, "e-0"))
	waittest.Until(t, 30*time.Second, "audit-source-silent", func() bool { return len(s.byRule(quiet.RuleSilent)) > 0 })
	silent := only(t, "silence", s.byRule(quiet.RuleSilent))
	if a := s.alert(silent); !strings.Contains(a.Output, "eks /aws/eks/e2e/cluster") {
		t.Errorf("silence does not name the log group: %+v", a)
	}
	s.waitFor(t, deletion(logs, time.Now().Truncate(time.Millisecond), "e-1"))
	waittest.Until(t, 30*time.Second, "audit-source-resumed", func() bool { return len(s.byRule(quiet.RuleResumed)) > 0 })
	only(t, "resumption", s.byRule(quiet.RuleResumed))
	if n := s.snapshot()[silent]; n != 1 {
		t.Errorf("silence %s delivered %d times, want once", silent, n)
	}
}

// TestAWebhookThatStopsReceivingIsAnAlert: the webhook's silence and its
// end, each delivered once.
func TestAWebhookThatStopsReceivingIsAnAlert(t *testing.T) {
	s := newSink(t)
	hookAddr := freeAddr(t)
	logs := &logtest.Buffer{}
	r := start(t, advConfig(t, t.TempDir(), fmt.Sprintf(`ingest:
  webhook: {listen: %q, insecure: true, silent_after: 1s}
destinations:
  - {name: sink, type: webhook, url: %q}
`, hookAddr, s.srv.URL)), logs)
	defer r.stop(t)
	// Strict log pipelines refuse a record with a key twice.
	listening := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "webhook receiver listening") {
			continue
		}
		listening++
		if n := strings.Count(line, "source="); n != 1 {
			t.Errorf("the webhook logs its source key %d times: %s", n, line)
		}
	}
	if listening != 1 {
		t.Errorf("the webhook logged %d times that it listens, want once", listening)
	}
	send := func(auditID string) {
		t.Helper()
		body := eventList(event(auditID, "ResponseComplete", "alice", appGroups, "get", "pods", "default", "web", 200))
		if code, err := post(t, "http://"+hookAddr, strings.NewReader(string(body)), http.Header{}); err != nil || code != http.StatusOK {
			t.Fatalf("webhook answered %d (%v)", code, err)
		}
	}
	send("w-1")
	waittest.Until(t, 30*time.Second, "audit-source-silent", func() bool { return len(s.byRule(quiet.RuleSilent)) > 0 })
	if a := s.alert(only(t, "silence", s.byRule(quiet.RuleSilent))); !strings.Contains(a.Output, "the webhook of cluster adv") {
		t.Errorf("silence does not name the webhook: %+v", a)
	}
	send("w-2")
	waittest.Until(t, 30*time.Second, "audit-source-resumed", func() bool { return len(s.byRule(quiet.RuleResumed)) > 0 })
	only(t, "resumption", s.byRule(quiet.RuleResumed))
}
