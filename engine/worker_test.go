package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

// runStreams starts a server with vigil's streams and connects to it; the
// context bounds the test.
func runStreams(t testing.TB) (*nats.Conn, jetstream.JetStream, context.Context) {
	t.Helper()
	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return nc, js, ctx
}

// failing is an evaluator whose threshold store is down: every event fails.
type failing struct{}

func (failing) Evaluate(context.Context, *audit.Event) ([]*alert.Alert, error) {
	return nil, errors.New("threshold store unavailable")
}

// TestWorkerDeadLettersExhaustedEvents checks that an event no worker can
// evaluate is retried MaxDeliver times and then kept in the DEAD stream with
// the reason, instead of being redelivered forever or dropped.
func TestWorkerDeadLettersExhaustedEvents(t *testing.T) {
	nc, js, ctx := runStreams(t)
	raw, err := audit.ParseRaw([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x-1","stage":"ResponseComplete","verb":"get"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.NewPublisher(js, "c1").Publish(ctx, []audit.Raw{raw}); err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.DiscardHandler)
	w := engine.NewWorker(js, failing{}, engine.WorkerOptions{AckWait: time.Second, MaxDeliver: 2, MaxAckPending: 10, FetchBatch: 10}, logger)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(runCtx) })
	wg.Go(func() { _ = engine.DeadLetterExhausted(runCtx, nc, js, logger) })
	defer func() { stop(); wg.Wait() }()

	dead, err := js.Stream(ctx, bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	for m == nil {
		m, err = dead.GetLastMsgForSubject(ctx, bus.DeadSubject("engine"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			m = nil
			select {
			case <-ctx.Done():
				t.Fatalf("exhausted event never reached DEAD; worker retried %d times", w.Stats().Retried.Load())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(m.Data) != string(raw.Data) {
		t.Errorf("dead letter data = %s, want the original event", m.Data)
	}
	if got := m.Header.Get(bus.HeaderReason); got != "not processed after 2 deliveries" {
		t.Errorf("reason = %q", got)
	}
	if got := w.Stats().Retried.Load(); got != 2 {
		t.Errorf("retried %d times, want 2 (MaxDeliver)", got)
	}
}

// gated is an evaluator whose first evaluation waits until release is
// closed, after telling started; the others return at once.
type gated struct {
	started, release chan struct{}
	once             sync.Once
}

func (g *gated) Evaluate(context.Context, *audit.Event) ([]*alert.Alert, error) {
	g.once.Do(func() {
		close(g.started)
		<-g.release
	})
	return nil, nil
}

// publishEvents stores n events on AUDIT, auditIDs prefix-0 to prefix-(n-1).
func publishEvents(t testing.TB, ctx context.Context, js jetstream.JetStream, prefix string, n int) {
	t.Helper()
	raws := make([]audit.Raw, 0, n)
	for i := range n {
		raw, err := audit.ParseRaw(fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"%s-%d","stage":"ResponseComplete","verb":"get"}`, prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if err := bus.NewPublisher(js, "c1").Publish(ctx, raws); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerStopFinishesWhatItHolds checks that a stopping worker evaluates
// and acknowledges every event already delivered to it — the batch being
// evaluated and those buffered behind it — instead of leaving them to be
// redelivered when AckWait runs out.
func TestWorkerStopFinishesWhatItHolds(t *testing.T) {
	_, js, ctx := runStreams(t)
	// More than a batch, and no more than the worker holds: once all are
	// delivered, no pull is answered, so none can be in flight when the
	// worker stops (a message the server sends as the worker unsubscribes
	// is redelivered after AckWait, whatever the worker does).
	const events = 60
	publishEvents(t, ctx, js, "held", events)

	// AckWait far beyond the test: an event left unacknowledged would
	// still be pending when the test looks.
	opts := engine.WorkerOptions{AckWait: 10 * time.Minute, MaxAckPending: 10_000, FetchBatch: 50}
	ev := &gated{started: make(chan struct{}), release: make(chan struct{})}
	w := engine.NewWorker(js, ev, opts, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()

	select {
	case <-ev.started:
	case <-ctx.Done():
		t.Fatal("the worker evaluated nothing")
	}
	// Let the pulls fill the worker's buffers behind the blocked batch.
	cons, err := js.Consumer(ctx, bus.StreamAudit, bus.ConsumerEngine)
	if err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 10*time.Second, "every event delivered", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.Delivered.Consumer == events
	})
	stop()
	close(ev.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after its context was cancelled")
	}

	waittest.Until(t, 10*time.Second, "no event left awaiting an ack", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0
	})
	if got := w.Stats().Events.Load(); got != events {
		t.Errorf("evaluated %d of the %d events it held: a stop dropped some", got, events)
	}
}

// TestWorkerConsumesAgainAfterItsConsumerIsDeleted checks that a worker
// whose consumer disappears provisions it again and goes on evaluating.
func TestWorkerConsumesAgainAfterItsConsumerIsDeleted(t *testing.T) {
	_, js, ctx := runStreams(t)
	w := engine.NewWorker(js, quiet{}, engine.WorkerOptions{FetchBatch: 10}, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()

	publishEvents(t, ctx, js, "before", 20)
	waittest.Until(t, 30*time.Second, "the first events evaluated", func() bool { return w.Stats().Events.Load() == 20 })
	if err := js.DeleteConsumer(ctx, bus.StreamAudit, bus.ConsumerEngine); err != nil {
		t.Fatal(err)
	}
	publishEvents(t, ctx, js, "after", 5)
	// The consumer provisioned again starts from the stream's first event:
	// the 20 are evaluated once more, then the 5.
	waittest.Until(t, 30*time.Second, "the events published after the deletion evaluated", func() bool { return w.Stats().Events.Load() >= 45 })
}

// quiet is an evaluator that raises nothing.
type quiet struct{}

func (quiet) Evaluate(context.Context, *audit.Event) ([]*alert.Alert, error) { return nil, nil }

// BenchmarkWorkerConsume is what a worker spends per event on consuming
// alone — pulling, decoding and acknowledging, with an evaluator that
// raises nothing — against a server on the same machine. The events are
// stored before the clock starts.
func BenchmarkWorkerConsume(b *testing.B) {
	_, js, ctx := runStreams(b)
	for from := 0; from < b.N; from += 1000 {
		publishEvents(b, ctx, js, fmt.Sprintf("bench-%d", from), min(1000, b.N-from))
	}
	w := engine.NewWorker(js, quiet{}, engine.WorkerOptions{}, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.ResetTimer()
	wg.Go(func() { _ = w.Run(runCtx) })
	for w.Stats().Events.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	stop()
	wg.Wait()
}
