package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/natstest"
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
	if err := bus.EnsureStreams(ctx, js, config.NATS{}); err != nil {
		t.Fatal(err)
	}
	return &jsEnv{url: srv.ClientURL(), js: js, pub: bus.NewPublisher(js, "test")}
}

func (e *jsEnv) count(t testing.TB, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitCount waits until stream holds at least n messages.
func (e *jsEnv) waitCount(t testing.TB, stream string, n uint64) {
	t.Helper()
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
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// messages reads every message of stream.
func (e *jsEnv) messages(t testing.TB, stream string) []jetstream.Msg {
	t.Helper()
	n := e.count(t, stream)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(min(1000, n-uint64(len(out)))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			t.Fatal(batch.Error())
		}
		if got == 0 {
			t.Fatalf("%s: read %d of %d messages", stream, len(out), n)
		}
	}
	return out
}

// stored returns how often each auditID/stage is on the AUDIT stream.
func (e *jsEnv) stored(t testing.TB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range e.messages(t, bus.StreamAudit) {
		// The MsgID names the event; check that it is the event's own
		// rather than decode tens of thousands of events again.
		id := m.Headers().Get(jetstream.MsgIDHeader)
		auditID, stage, ok := strings.Cut(id, "/")
		if !ok || !bytes.Contains(m.Data(), []byte(`"auditID":"`+auditID+`"`)) || !bytes.Contains(m.Data(), []byte(`"stage":"`+stage+`"`)) {
			t.Fatalf("AUDIT message with MsgID %q does not hold that event: %.200s", id, m.Data())
		}
		out[id]++
	}
	return out
}

// expectExactlyOnce checks that AUDIT holds every id of want once and
// nothing else.
func (e *jsEnv) expectExactlyOnce(t testing.TB, want map[string]bool) {
	t.Helper()
	got := e.stored(t)
	missing, dup, extra := 0, 0, 0
	for id := range want {
		switch n := got[id]; {
		case n == 0:
			missing++
			if missing <= 5 {
				t.Errorf("event %s never reached AUDIT", id)
			}
		case n > 1:
			dup++
			if dup <= 5 {
				t.Errorf("event %s reached AUDIT %d times", id, n)
			}
		}
	}
	for id := range got {
		if !want[id] {
			extra++
			if extra <= 5 {
				t.Errorf("AUDIT holds unexpected event %s", id)
			}
		}
	}
	if missing+dup+extra > 0 {
		t.Fatalf("of %d events: %d missing, %d duplicated, %d unexpected", len(want), missing, dup, extra)
	}
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

func start(t testing.TB, cfg config.FileSource, dataDir string, pub *bus.Publisher, opts ...func(*Source)) *running {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	src, err := New(cfg, dataDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(src)
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
