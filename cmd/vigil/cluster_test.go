package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
	"github.com/vigil-k8s/vigil/rules"
)

const corpusLog = "../../../shared/corpus/immudb-log-audit/k8s.log"

// asVigilEnv, in the environment of a process the tests start, makes the
// test binary run vigil's main instead of the tests. The process tests so
// run the very build under test (with the race detector on) instead of
// building vigil a second time, without -race, which compiles every
// dependency again: minutes on a cold cache.
const asVigilEnv = "VIGIL_TEST_AS_VIGIL"

func TestMain(m *testing.M) {
	if os.Getenv(asVigilEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// vigilBinary is the executable the process tests run as vigil: this test
// binary (see asVigilEnv).
func vigilBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs vigil processes")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a vigil process under test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	metrics string        // base URL of /metrics
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit status, once exited
	logs    *logtest.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clusterNATS is the nats section for processes on a 3-node cluster.
func clusterNATS(url string) string { return fmt.Sprintf("nats: {url: %q, replicas: 3}", url) }

func startProc(t *testing.T, bin, role, name, natsSection, extra string) *proc {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`cluster: c1
data_dir: %s
%s
engine: {ack_wait: 3s, max_deliver: 20}
metrics: {listen: "127.0.0.1:%d"}
log: {level: info}
%s`, dir, natsSection, port, extra)
	path := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return launch(t, bin, role, name, path, port)
}

// writeRunConfig writes the config of a `vigil run` that the kill and
// disk-full tests stop and start again on one data_dir: its embedded NATS
// listening on natsPort, the file source on logPath, extraIngest (lines
// under ingest) and the sink as its one destination. It returns the path.
func writeRunConfig(t *testing.T, dataDir, logPath, sinkURL, extraIngest string, natsPort, metricsPort int) string {
	t.Helper()
	cfg := fmt.Sprintf(`cluster: c1
data_dir: %s
nats: {listen: "127.0.0.1:%d"}
engine: {ack_wait: 3s, max_deliver: 1000}
notify: {ack_wait: 3s}
metrics: {listen: "127.0.0.1:%d"}
log: {level: info}
ingest:
  files: [{path: %s, poll_interval: 20ms}]
%sdestinations: [{name: sink, type: webhook, url: %q}]
`, dataDir, natsPort, metricsPort, logPath, extraIngest, sinkURL)
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// launch runs `vigil ROLE --config cfgPath` as a process killed when the
// test ends; metricsPort is the config's metrics.listen port.
func launch(t *testing.T, bin, role, name, cfgPath string, metricsPort int) *proc {
	t.Helper()
	p := &proc{name: name, metrics: fmt.Sprintf("http://127.0.0.1:%d", metricsPort), exited: make(chan struct{}), logs: &logtest.Buffer{}}
	p.cmd = exec.Command(bin, role, "--config", cfgPath)
	p.cmd.Env = append(os.Environ(), asVigilEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("--- %s logs ---\n%s", p.name, p.logs.String())
		}
	})
	return p
}

// waitReady waits for /readyz of p.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	waitUntil(t, 60*time.Second, p.name+" ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited during start-up: %v\n%s", p.name, p.err, p.logs.String())
		default:
		}
		resp, err := http.Get(p.metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

var metricLine = regexp.MustCompile(`(?m)^vigil_engine_events_total (\S+)$`)

// eventsEvaluated reads vigil_engine_events_total from p's /metrics.
func (p *proc) eventsEvaluated() float64 {
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := metricLine.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, timeout, what, cond)
}

// alertSink is the webhook destination; it counts deliveries per alert id.
type alertSink struct {
	mu     sync.Mutex
	counts map[string]int
}

func newAlertSink(t *testing.T) (*alertSink, *httptest.Server) {
	s := &alertSink{counts: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Alerts []alert.Alert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, a := range body.Alerts {
			s.counts[a.ID]++
		}
		s.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *alertSink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// workload replays the real-cluster log with fresh auditIDs until n events,
// with attacks mixed in: Secrets read by an application service account, a
// Deployment deleted in default, and bursts of denied requests that
// threshold rules must count across workers.
func workload(t *testing.T, n int) [][]byte {
	t.Helper()
	f, err := os.Open(corpusLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		base []map[string]any
		ids  []string
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		base = append(base, m)
		ids = append(ids, fmt.Sprint(m["auditID"]))
	}
	out := make([][]byte, 0, n)
	add := func(m map[string]any) {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	attack := func(id, user, verb, resource, ns, name string, code int, at time.Time) {
		r := request{id: id, user: user, userAgent: "curl/8.5.0", verb: verb, resource: resource, ns: ns, name: name, code: code, at: at}
		if resource == "deployments" {
			r.apiGroup = "apps"
		}
		for _, ev := range r.events() {
			add(ev)
		}
	}
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	for i := 0; len(out) < n; i++ {
		m := base[i%len(base)]
		m["auditID"] = fmt.Sprintf("%s-%d", ids[i%len(base)], i/len(base))
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		m["requestReceivedTimestamp"] = at.Format(time.RFC3339Nano)
		m["stageTimestamp"] = at.Format(time.RFC3339Nano)
		add(m)
		switch {
		case i%500 == 250:
			attack(fmt.Sprintf("atk-secret-%d", i), "system:serviceaccount:default:app", "get", "secrets", "default", fmt.Sprintf("s-%d", i), 200, at)
		case i%2000 == 1000:
			attack(fmt.Sprintf("atk-deploy-%d", i), "mallory", "delete", "deployments", "default", fmt.Sprintf("d-%d", i), 200, at)
		case i%7000 >= 3000 && i%7000 < 3030:
			// 30 denied requests within a second: one forbidden-burst alert.
			attack(fmt.Sprintf("atk-403-%d", i), fmt.Sprintf("prober-%d", i/7000), "list", "secrets", "kube-system", "", 403, at)
		}
	}
	return out[:n]
}

// request is one API request, as the tests' workloads make them up.
type request struct {
	id, user, userAgent, verb string
	resource, apiGroup        string
	ns, name                  string
	code                      int
	at                        time.Time
}

// events are the request's audit events at Metadata level, as
// kube-apiserver logs them: RequestReceived, then ResponseComplete with the
// response code.
func (r request) events() []map[string]any {
	uri := "/api/v1"
	if r.apiGroup != "" {
		uri = "/apis/" + r.apiGroup + "/v1"
	}
	if r.ns != "" {
		uri += "/namespaces/" + r.ns
	}
	uri += "/" + r.resource
	if r.name != "" {
		uri += "/" + r.name
	}
	out := make([]map[string]any, 0, 2)
	for _, stage := range []string{"RequestReceived", "ResponseComplete"} {
		objectRef := map[string]any{"resource": r.resource, "namespace": r.ns, "name": r.name, "apiVersion": "v1"}
		if r.apiGroup != "" {
			objectRef["apiGroup"] = r.apiGroup
		}
		ev := map[string]any{
			"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": r.id, "stage": stage,
			"requestURI": uri, "verb": r.verb,
			"user":      map[string]any{"username": r.user, "groups": []string{"system:authenticated"}},
			"sourceIPs": []string{"10.9.9.9"}, "userAgent": r.userAgent,
			"objectRef":                objectRef,
			"requestReceivedTimestamp": r.at.Format(time.RFC3339Nano), "stageTimestamp": r.at.Format(time.RFC3339Nano),
		}
		if stage != "RequestReceived" {
			ev["responseStatus"] = map[string]any{"code": r.code}
		}
		out = append(out, ev)
	}
	return out
}

// writeEvents writes events to path as an audit log, one per line.
func writeEvents(t *testing.T, path string, events [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, e := range events {
		_, _ = w.Write(e)
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// expectedAlerts evaluates the workload offline, in order, with one
// in-memory evaluator: what any number of workers must reproduce.
func expectedAlerts(t *testing.T, events [][]byte) map[string]bool {
	t.Helper()
	path := filepath.Join(t.TempDir(), "workload.log")
	writeEvents(t, path, events)
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	_, err = engine.Replay(context.Background(), set, []string{path}, engine.ReplayOptions{
		OnAlert: func(a *alert.Alert) error { want[a.ID] = true; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func publish(t *testing.T, ctx context.Context, js jetstream.JetStream, events [][]byte) {
	t.Helper()
	pub := bus.NewPublisher(js, "c1")
	const batch = 500
	for i := 0; i < len(events); i += batch {
		raws := make([]audit.Raw, 0, batch)
		for _, e := range events[i:min(i+batch, len(events))] {
			r, err := audit.ParseRaw(e)
			if err != nil {
				t.Fatal(err)
			}
			raws = append(raws, r)
		}
		for attempt := 0; ; attempt++ {
			err := pub.Publish(ctx, raws)
			if err == nil {
				break
			}
			if attempt > 20 {
				t.Fatalf("publish: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// TestWorkersShareLoadAndSurviveFailures is the scale-out contract: three
// `vigil worker` processes on a 3-node JetStream cluster share 50,000
// events; one worker is SIGKILLed and one NATS node shut down mid-run; every
// alert the offline evaluator expects — per-event and threshold alike — is
// delivered exactly once.
func TestWorkersShareLoadAndSurviveFailures(t *testing.T) {
	bin := vigilBinary(t)
	servers := natstest.RunCluster(t, 3)
	url := natstest.URLs(servers...)
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	events := workload(t, 50_000)
	want := expectedAlerts(t, events)
	if len(want) < 100 {
		t.Fatalf("workload raises only %d alerts offline; the attacks are not being detected", len(want))
	}
	sink, sinkSrv := newAlertSink(t)

	var workers []*proc
	for i := range 3 {
		w := startProc(t, bin, "worker", fmt.Sprintf("worker-%d", i+1), clusterNATS(url), "")
		workers = append(workers, w)
	}
	notifier := startProc(t, bin, "notify", "notify", clusterNATS(url), fmt.Sprintf("destinations: [{name: sink, type: webhook, url: %q}]\n", sinkSrv.URL))
	for _, p := range append(workers, notifier) {
		p.waitReady(t)
	}

	half := len(events) / 2
	start := time.Now()
	publish(t, ctx, js, events[:half])
	t.Logf("published %d events in %s; evaluated so far: %.0f %.0f %.0f", half, time.Since(start),
		workers[0].eventsEvaluated(), workers[1].eventsEvaluated(), workers[2].eventsEvaluated())
	// Kill a worker once it is doing real work, and take a NATS node away.
	waitUntil(t, 60*time.Second, "worker-1 to evaluate events", func() bool { return workers[0].eventsEvaluated() > 500 })
	killedAt := workers[0].eventsEvaluated()
	if err := workers[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	servers[2].Shutdown()
	publish(t, ctx, js, events[half:])

	waitUntil(t, 3*time.Minute, "all expected alerts delivered", func() bool {
		got := sink.snapshot()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, time.Minute, "consumers idle", func() bool {
		return natstest.ConsumerIdle(ctx, js, bus.StreamAudit, bus.ConsumerEngine) &&
			natstest.ConsumerIdle(ctx, js, bus.StreamAlerts, bus.ConsumerNotifyPrefix+"sink")
	})

	got := sink.snapshot()
	for id, n := range got {
		if !want[id] {
			t.Errorf("unexpected alert %s", id)
		}
		if n != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, n)
		}
	}
	var thresholds int
	for id := range want {
		if strings.HasPrefix(id, "forbidden-burst/") {
			thresholds++
		}
	}
	if thresholds == 0 {
		t.Errorf("no forbidden-burst alert expected; the workload's bursts are not exercising thresholds")
	}
	if killedAt <= 0 {
		t.Errorf("killed worker had evaluated nothing")
	}
	for _, w := range workers[1:] {
		if n := w.eventsEvaluated(); n <= 0 {
			t.Errorf("%s evaluated %v events: the work was not shared", w.name, n)
		}
	}
	t.Logf("%d alerts (%d threshold) delivered once each; worker-1 evaluated %.0f events before SIGKILL, others %.0f and %.0f",
		len(got), thresholds, killedAt, workers[1].eventsEvaluated(), workers[2].eventsEvaluated())
}

// TestWorkersStartingTogetherProvisionOnce starts five workers at the same
// moment against an empty cluster: each stream and the engine consumer are
// created once, and every worker starts without error.
func TestWorkersStartingTogetherProvisionOnce(t *testing.T) {
	bin := vigilBinary(t)
	servers := natstest.RunCluster(t, 3)
	url := natstest.URLs(servers...)
	var workers []*proc
	for i := range 5 {
		workers = append(workers, startProc(t, bin, "worker", fmt.Sprintf("worker-%d", i+1), clusterNATS(url), ""))
	}
	for _, w := range workers {
		w.waitReady(t)
	}
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	if want := len(bus.StreamConfigs(bus.StreamOptions{})) + len(bus.KVConfigs(bus.StreamOptions{})); len(names) != want {
		t.Errorf("streams = %v, want AUDIT, ALERTS, DEAD and the KV buckets once each (%d)", names, want)
	}
	s, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	var consumers []string
	for n := range s.ListConsumers(ctx).Info() {
		consumers = append(consumers, n.Name)
		if n.Config.Replicas != 0 && n.Config.Replicas != 3 {
			t.Errorf("consumer %s replicas = %d", n.Name, n.Config.Replicas)
		}
	}
	if len(consumers) != 1 || consumers[0] != bus.ConsumerEngine {
		t.Errorf("AUDIT consumers = %v, want just %q", consumers, bus.ConsumerEngine)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 {
		t.Errorf("AUDIT replicas = %d, want 3", info.Config.Replicas)
	}
	for _, w := range workers {
		if strings.Contains(w.logs.String(), "level=ERROR") {
			t.Errorf("%s logged an error:\n%s", w.name, w.logs.String())
		}
	}
}

// TestExtraWorkerJoinsEmbeddedServer grows a single `vigil run` (embedded
// NATS served with nats.listen) by a `vigil worker` process on it: both
// evaluate events and every expected alert is delivered once.
func TestExtraWorkerJoinsEmbeddedServer(t *testing.T) {
	bin := vigilBinary(t)
	sink, sinkSrv := newAlertSink(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logPath := filepath.Join(t.TempDir(), "audit.log")
	events := workload(t, 20_000)
	want := expectedAlerts(t, events)

	runner := startProc(t, bin, "run", "run", fmt.Sprintf("nats: {listen: %q}", natsAddr), fmt.Sprintf(`ingest:
  files: [{path: %s, poll_interval: 20ms}]
destinations: [{name: sink, type: webhook, url: %q}]
`, logPath, sinkSrv.URL))
	runner.waitReady(t)
	worker := startProc(t, bin, "worker", "worker", fmt.Sprintf("nats: {url: %q}", "nats://"+natsAddr), "")
	worker.waitReady(t)

	writeEvents(t, logPath, events)

	waitUntil(t, 2*time.Minute, "all expected alerts delivered", func() bool {
		got := sink.snapshot()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, time.Minute, "every event evaluated", func() bool {
		return runner.eventsEvaluated()+worker.eventsEvaluated() >= float64(len(events))
	})
	for id, n := range sink.snapshot() {
		if !want[id] || n != 1 {
			t.Errorf("alert %s delivered %d times (expected: %v)", id, n, want[id])
		}
	}
	if worker.eventsEvaluated() <= 0 || runner.eventsEvaluated() <= 0 {
		t.Errorf("work not shared: run evaluated %.0f, worker %.0f", runner.eventsEvaluated(), worker.eventsEvaluated())
	}
}
