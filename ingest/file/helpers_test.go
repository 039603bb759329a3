package file

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m,
		// lumberjack starts a compression goroutine on its first rotation
		// and has no way to stop it.
		goleak.IgnoreAnyFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
		// klog (pulled in by the apiserver's audit log backend) flushes
		// from a goroutine started in its init.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

const corpus = "../../../shared/corpus"

// waitTimeout bounds every wait on a condition; the conditions are met in
// well under a second when things work.
const waitTimeout = 20 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// jsEnv is a real JetStream with vigil's streams.
type jsEnv struct {
	url string
	js  jetstream.JetStream
	pub *bus.Publisher
}

func newJS(t testing.TB) *jsEnv {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return &jsEnv{url: srv.ClientURL(), js: js, pub: bus.NewPublisher(js, "test")}
}

func (e *jsEnv) count(t testing.TB, stream string) uint64 {
	t.Helper()
	return natstest.Count(t, e.js, stream)
}

// waitCount waits until stream holds at least n messages, or, for AUDIT,
// n events.
func (e *jsEnv) waitCount(t testing.TB, stream string, n uint64) {
	t.Helper()
	if stream == bus.StreamAudit {
		natstest.WaitAuditEvents(t, e.js, int(n), waitTimeout)
		return
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		got := e.count(t, stream)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages, want %d", stream, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, waitTimeout, what, cond)
}

func (e *jsEnv) messages(t testing.TB, stream string) []jetstream.Msg {
	t.Helper()
	return natstest.Messages(t, e.js, stream)
}

// expectExactlyOnce checks that AUDIT holds every auditID/stage of want
// once and nothing else.
func (e *jsEnv) expectExactlyOnce(t testing.TB, want map[string]bool) {
	t.Helper()
	natstest.ExpectAuditExactlyOnce(t, e.js, want)
}

// idsIn returns the auditID/stage of every event line of files.
func idsIn(t testing.TB, files ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			if r, err := audit.ParseRaw(sc.Bytes()); err == nil {
				out[r.MsgID()] = true
			}
		}
		f.Close()
		if sc.Err() != nil {
			t.Fatal(sc.Err())
		}
	}
	return out
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, to, data)
}

func appendFile(t testing.TB, name string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// running is a Source started in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg Options, dataDir string, pub *bus.Publisher) *running {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	cfg.DataDir = dataDir
	src, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, pub) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the source and checks it stopped cleanly.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
	r.done = nil
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
