package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/pubsubtest"
)

// The Pub/Sub client, linked through the gke source, leaves goroutines of
// its own behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, pubsubtest.IgnoreLeaks()...) }

// sink is a webhook destination that counts deliveries per alert id.
type sink struct {
	mu     sync.Mutex
	counts map[string]int
	alerts map[string]alert.Alert
	srv    *httptest.Server
}

func newSink(t *testing.T) *sink {
	s := &sink{counts: map[string]int{}, alerts: map[string]alert.Alert{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Version string        `json:"version"`
			Alerts  []alert.Alert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Version != "1" {
			t.Errorf("sink: bad body (version %q): %v", body.Version, err)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, a := range body.Alerts {
			s.counts[a.ID]++
			s.alerts[a.ID] = a
		}
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

func (s *sink) waitFor(t *testing.T, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got := s.snapshot()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("alerts %v not all delivered within 30s; got %v", ids, s.snapshot())
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	app    *app.App
}

func start(t *testing.T, cfg *config.Config, logs io.Writer) *running {
	t.Helper()
	return startOpts(t, cfg, logs)
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not stop within 60s")
	}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// event renders one audit event line as kube-apiserver's log backend does.
func event(auditID, stage, user string, groups []string, verb, resource, ns, name string, code int) string {
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": auditID, "stage": stage,
		"requestURI": fmt.Sprintf("/api/v1/namespaces/%s/%s/%s", ns, resource, name),
		"verb":       verb,
		"user":       map[string]any{"username": user, "groups": groups},
		"sourceIPs":  []string{"10.0.2.7"}, "userAgent": "curl/8.5.0",
		"objectRef":                map[string]any{"resource": resource, "namespace": ns, "name": name, "apiVersion": "v1"},
		"requestReceivedTimestamp": "2026-03-04T10:00:00.000000Z",
		"stageTimestamp":           "2026-03-04T10:00:00.001000Z",
	}
	if resource == "deployments" {
		ev["objectRef"].(map[string]any)["apiGroup"] = "apps"
	}
	if stage != "RequestReceived" {
		ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": code}
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

var appGroups = []string{"system:serviceaccounts", "system:authenticated"}

func testConfig(t *testing.T, dir, logPath, sinkURL string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
ingest:
  files: [{path: %s, poll_interval: 20ms}]
destinations:
  - {name: sink, type: webhook, url: %q}
`, filepath.Join(dir, "data"), logPath, sinkURL))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestEndToEnd runs the whole pipeline in one process — file tail, embedded
// JetStream, rule workers, webhook delivery — and checks what a user would:
// each detection arrives once, although each request is logged at two
// stages, and a restart on the same data_dir re-sends nothing.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	s := newSink(t)
	logs := &logtest.Buffer{}
	cfg := testConfig(t, dir, logPath, s.srv.URL)

	r := start(t, cfg, logs)
	benign := event("b-1", "ResponseComplete", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 200)
	appendLines(t, logPath,
		event("b-1", "RequestReceived", "system:node:n1", []string{"system:nodes"}, "get", "secrets", "default", "db", 0),
		benign,
		// A watch is logged at ResponseStarted and ResponseComplete: both match.
		event("a-1", "RequestReceived", "system:serviceaccount:default:app", appGroups, "watch", "secrets", "default", "db", 0),
		event("a-1", "ResponseStarted", "system:serviceaccount:default:app", appGroups, "watch", "secrets", "default", "db", 200),
		event("a-1", "ResponseComplete", "system:serviceaccount:default:app", appGroups, "watch", "secrets", "default", "db", 200),
		event("a-2", "RequestReceived", "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", "web", 0),
		event("a-2", "ResponseComplete", "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", "web", 200),
		// A denied delete is not an alert for this rule.
		event("b-2", "ResponseComplete", "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", "api", 403),
	)
	s.waitFor(t, "secret-read-by-non-node/a-1", "deployment-deleted-in-default/a-2")

	// Bad input is reported with file and line, and the run goes on.
	appendLines(t, logPath,
		`{"kind":"Event","auditID":`,
		``,
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}`,
		event("a-3", "ResponseComplete", "system:serviceaccount:default:app", appGroups, "get", "secrets", "default", "api-key", 200),
	)
	s.waitFor(t, "secret-read-by-non-node/a-3")
	r.stop(t)

	got := s.snapshot()
	for id, n := range got {
		if n != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, n)
		}
	}
	a := s.alerts["deployment-deleted-in-default/a-2"]
	if a.Cluster != "e2e" || a.User != "mallory" || a.Namespace != "default" || a.Name != "web" || a.Severity == "" || a.Title == "" {
		t.Errorf("alert fields not filled: %+v", a)
	}
	for _, want := range []string{"at=" + logPath + ":9 ", "at=" + logPath + ":11 "} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs do not name the bad line %s:\n%s", want, logs.String())
		}
	}

	// Restart on the same data_dir: nothing already delivered comes again,
	// and new events are still picked up.
	r = start(t, cfg, logs)
	appendLines(t, logPath,
		event("a-4", "ResponseComplete", "eve", []string{"system:authenticated"}, "delete", "deployments", "default", "db", 200))
	s.waitFor(t, "deployment-deleted-in-default/a-4")
	r.stop(t)
	after := s.snapshot()
	for id, n := range after {
		if n != 1 {
			t.Errorf("after restart: alert %s delivered %d times, want once", id, n)
		}
	}
	if len(after) != len(got)+1 {
		t.Errorf("after restart: %d alerts, want %d: %v", len(after), len(got)+1, after)
	}
}
