package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// failing is an evaluator whose threshold store is down: every event fails.
type failing struct{}

func (failing) Evaluate(context.Context, *audit.Event) ([]*alert.Alert, error) {
	return nil, errors.New("threshold store unavailable")
}

// TestWorkerDeadLettersExhaustedEvents checks that an event no worker can
// evaluate is retried MaxDeliver times and then kept in the DEAD stream with
// the reason, instead of being redelivered forever or dropped.
func TestWorkerDeadLettersExhaustedEvents(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
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
