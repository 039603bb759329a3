package app_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vigil-k8s/vigil/ingest/eks"
	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/cloudwatchtest"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

const eksStream = "kube-apiserver-audit-6c1f0b"

// awsEnv gives the SDK's default credential chain static keys from the
// environment, as a pod would have them, and nothing else to find.
func awsEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// eksConfig is a vigil reading the EKS cluster "e2e" from endpoint, with
// what else is given (nats, destinations).
func eksConfig(t *testing.T, dir, endpoint, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("eks.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
reload: {watch: false}
ingest:
  sources:
    - {type: eks, endpoint: %q, poll_interval: 20ms, overlap: 1m, start_at: beginning}
%s`, filepath.Join(dir, "data"), endpoint, extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// deletion is an event the default pack alerts on once per request
// (deployment-deleted-in-default), logged at two stages.
func deletion(logs *cloudwatchtest.Logs, at time.Time, auditID string) string {
	group := eks.LogGroup("e2e")
	for _, stage := range []string{"RequestReceived", "ResponseComplete"} {
		logs.Put(group, eksStream, at, event(auditID, stage, "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", auditID, 200))
	}
	return "deployment-deleted-in-default/" + auditID
}

func expectOnce(t *testing.T, s *sink, want []string) {
	t.Helper()
	got := s.snapshot()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d alerts delivered, want %d: %v", len(got), len(want), got)
	}
}

// TestEKSEveryEventOnceAcrossARestart runs vigil on an EKS cluster's
// CloudWatch log group: events sharing a millisecond, some made visible
// after the cursor reached their millisecond, some while vigil is
// stopped, each raise their alert once.
func TestEKSEveryEventOnceAcrossARestart(t *testing.T) {
	awsEnv(t)
	dir := t.TempDir()
	logs := cloudwatchtest.New()
	ep := logs.Serve(t)
	s := newSink(t)
	cfg := eksConfig(t, dir, ep.URL, fmt.Sprintf("destinations:\n  - {name: sink, type: webhook, url: %q}\n", s.srv.URL))
	buf := &logtest.Buffer{}

	t0 := time.Now().Add(-5 * time.Second).Truncate(time.Millisecond)
	var want []string
	for i := range 4 {
		want = append(want, deletion(logs, t0, fmt.Sprintf("d-%d", i)))
	}
	r := start(t, cfg, buf)
	s.waitFor(t, want...)
	want = append(want, deletion(logs, t0, "d-same-ms-later"))
	s.waitFor(t, want...)
	r.stop(t)

	want = append(want, deletion(logs, t0, "d-while-stopped"), deletion(logs, t0.Add(time.Millisecond), "d-after"))
	r = start(t, cfg, buf)
	s.waitFor(t, want...)
	// Polls after the restart re-read the overlap and find nothing new.
	calls := ep.Calls("FilterLogEvents")
	waittest.Until(t, 30*time.Second, "polls after the restart", func() bool { return ep.Calls("FilterLogEvents") > calls+5 })
	r.stop(t)
	expectOnce(t, s, want)
}

// startBackend runs a NATS server and vigil's worker and notifier
// delivering to s, for ingest replicas to run against with the returned
// nats section. They read no log group: they get a configuration with no
// source.
func startBackend(t *testing.T, s *sink, logs *logtest.Buffer) (srv *server.Server, nats string, r *running) {
	t.Helper()
	srv = natstest.RunServer(t)
	nats = fmt.Sprintf("nats: {url: %q}\n", srv.ClientURL())
	backend, err := config.Parse("backend.yaml", fmt.Appendf(nil, "cluster: e2e\ndata_dir: %s\nreload: {watch: false}\n%sdestinations:\n  - {name: sink, type: webhook, url: %q}\n",
		filepath.Join(t.TempDir(), "data"), nats, s.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return srv, nats, startRole(t, backend, app.RoleWorker|app.RoleNotify, logs)
}

// TestEKSLeaseTakeover runs two ingest replicas on one log group: only
// the lease holder polls, and when it stops the other takes over from its
// cursor, without losing or repeating an alert.
func TestEKSLeaseTakeover(t *testing.T) {
	awsEnv(t)
	logs := cloudwatchtest.New()
	s := newSink(t)
	buf := &logtest.Buffer{}
	_, nats, w := startBackend(t, s, buf)
	defer w.stop(t)

	eps := []*cloudwatchtest.Endpoint{logs.Serve(t), logs.Serve(t)}
	replicas := make([]*running, 2)
	for i, ep := range eps {
		replicas[i] = startRole(t, eksConfig(t, t.TempDir(), ep.URL, nats), app.RoleIngest, buf)
	}
	t0 := time.Now().Add(-5 * time.Second).Truncate(time.Millisecond)
	want := []string{deletion(logs, t0, "l-0"), deletion(logs, t0, "l-1")}
	s.waitFor(t, want...)

	holder := -1
	for i, ep := range eps {
		if ep.Calls("FilterLogEvents") > 0 {
			if holder >= 0 {
				t.Fatalf("both replicas polled: %d and %d FilterLogEvents calls", eps[0].Calls("FilterLogEvents"), eps[1].Calls("FilterLogEvents"))
			}
			holder = i
		}
	}
	other := 1 - holder
	replicas[holder].stop(t)

	want = append(want, deletion(logs, t0, "l-2"), deletion(logs, t0.Add(time.Millisecond), "l-3"))
	s.waitFor(t, want...)
	if eps[other].Calls("FilterLogEvents") == 0 {
		t.Fatal("the alerts came, but not from the replica that took over")
	}
	replicas[other].stop(t)
	expectOnce(t, s, want)
}
