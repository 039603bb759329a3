package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// alerting raises one alert of rule "every" per event, and counts how
// often each auditID was evaluated; failFirst fails the first evaluation
// of that auditID.
type alerting struct {
	mu        sync.Mutex
	seen      map[string]int
	failFirst string
}

func newAlerting() *alerting { return &alerting{seen: map[string]int{}} }

func (a *alerting) Evaluate(_ context.Context, ev *audit.Event) ([]*alert.Alert, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[ev.AuditID]++
	if ev.AuditID == a.failFirst && a.seen[ev.AuditID] == 1 {
		return nil, errors.New("threshold store unavailable")
	}
	return []*alert.Alert{{ID: alert.ID("every", ev.AuditID), Rule: "every", Severity: "low", AuditID: ev.AuditID, Cluster: ev.Cluster}}, nil
}

func (a *alerting) evaluated() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.seen))
	for k, v := range a.seen {
		out[k] = v
	}
	return out
}

func eventLine(auditID string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":%q,"stage":"ResponseComplete","verb":"get"}`, auditID)
}

// publishSegment stores lines as one segment, as the webhook does, but
// with whatever lines the test gives.
func publishSegment(t testing.TB, ctx context.Context, js jetstream.JetStream, id string, lines ...string) {
	t.Helper()
	m := &nats.Msg{Subject: bus.AuditSubject("c1"), Data: []byte(strings.Join(lines, "\n") + "\n"), Header: nats.Header{}}
	m.Header.Set(bus.HeaderSegment, bus.SegmentFormat)
	m.Header.Set(bus.HeaderCluster, "c1")
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

func runWorker(t testing.TB, ctx context.Context, js jetstream.JetStream, ev engine.AlertEvaluator, o engine.WorkerOptions) *engine.Worker {
	t.Helper()
	w := engine.NewWorker(js, ev, o, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(runCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })
	return w
}

// alertCounts reads ALERTS: how many messages each alert id has.
func alertCounts(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range natstest.Messages(t, js, bus.StreamAlerts) {
		out[m.Headers().Get(jetstream.MsgIDHeader)]++
	}
	return out
}

func waitIdle(t testing.TB, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	waittest.Until(t, 30*time.Second, "every AUDIT message acknowledged", func() bool {
		return natstest.ConsumerIdle(ctx, js, bus.StreamAudit, bus.ConsumerEngine)
	})
}

// TestWorkerEvaluatesOldSingleEventMessagesAndSegmentsAlike checks that a
// stream holding messages of one event, as older versions and the file
// source write them, and segments is evaluated whole, each alert stored
// once.
func TestWorkerEvaluatesOldSingleEventMessagesAndSegmentsAlike(t *testing.T) {
	_, js, ctx := runStreams(t)
	publishEvents(t, ctx, js, "single", 5)
	publishSegment(t, ctx, js, "seg-a", eventLine("seg-0"), eventLine("seg-1"), eventLine("seg-2"))
	publishEvents(t, ctx, js, "later", 2)
	publishSegment(t, ctx, js, "seg-b", eventLine("seg-3"))

	ev := newAlerting()
	w := runWorker(t, ctx, js, ev, engine.WorkerOptions{FetchBatch: 4})
	waitIdle(t, ctx, js)
	want := []string{"single-0", "single-1", "single-2", "single-3", "single-4", "seg-0", "seg-1", "seg-2", "later-0", "later-1", "seg-3"}
	seen := ev.evaluated()
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("%s evaluated %d times, want once", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("evaluated %v, want %v", seen, want)
	}
	if got := w.Stats().Events.Load(); got != int64(len(want)) {
		t.Errorf("Events = %d, want %d: it counts events, not messages", got, len(want))
	}
	alerts := alertCounts(t, js)
	for _, id := range want {
		if alerts[alert.ID("every", id)] != 1 {
			t.Errorf("alert of %s stored %d times, want once", id, alerts[alert.ID("every", id)])
		}
	}
}

// TestABadEventOfASegmentIsDeadLetteredAndTheOthersEvaluated checks that
// an event of a segment that does not decode goes to DEAD alone, with its
// reason, where it was and its data, while the rest of its segment raises
// its alerts.
func TestABadEventOfASegmentIsDeadLetteredAndTheOthersEvaluated(t *testing.T) {
	_, js, ctx := runStreams(t)
	bad := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}`
	publishSegment(t, ctx, js, "seg", eventLine("ok-0"), bad, eventLine("ok-1"), `{"not json`, eventLine("ok-2"))

	ev := newAlerting()
	w := runWorker(t, ctx, js, ev, engine.WorkerOptions{})
	waitIdle(t, ctx, js)
	seen := ev.evaluated()
	for _, id := range []string{"ok-0", "ok-1", "ok-2"} {
		if seen[id] != 1 {
			t.Errorf("%s evaluated %d times, want once", id, seen[id])
		}
	}
	alerts := alertCounts(t, js)
	if len(alerts) != 3 {
		t.Errorf("ALERTS holds %v, want the alerts of ok-0, ok-1 and ok-2", alerts)
	}
	dead := natstest.Messages(t, js, bus.StreamDead)
	if len(dead) != 2 {
		t.Fatalf("DEAD holds %d messages, want the 2 bad events", len(dead))
	}
	for i, want := range []string{bad, `{"not json`} {
		m := dead[i]
		if string(m.Data()) != want {
			t.Errorf("dead letter %d holds %q, want the bad event %q", i, m.Data(), want)
		}
		src := m.Headers().Get(bus.HeaderSource)
		if wantSrc := fmt.Sprintf("%s#1[%d]", bus.AuditSubject("c1"), 2*i+1); src != wantSrc {
			t.Errorf("dead letter %d from %q, want %q", i, src, wantSrc)
		}
		if m.Headers().Get(bus.HeaderReason) == "" {
			t.Errorf("dead letter %d has no reason", i)
		}
	}
	if got := w.Stats().Malformed.Load(); got != 2 {
		t.Errorf("Malformed = %d, want 2", got)
	}
}

// TestAFailedEvaluationRedeliversTheSegmentAndEachAlertIsStoredOnce checks
// that an evaluation failing in the middle of a segment hands the whole
// segment back, and that evaluating its events again on redelivery stores
// no alert twice.
func TestAFailedEvaluationRedeliversTheSegmentAndEachAlertIsStoredOnce(t *testing.T) {
	_, js, ctx := runStreams(t)
	publishSegment(t, ctx, js, "seg", eventLine("r-0"), eventLine("r-1"), eventLine("r-2"), eventLine("r-3"))
	ev := newAlerting()
	ev.failFirst = "r-2"
	w := runWorker(t, ctx, js, ev, engine.WorkerOptions{})
	waitIdle(t, ctx, js)
	seen := ev.evaluated()
	if seen["r-0"] != 2 || seen["r-1"] != 2 || seen["r-2"] != 2 || seen["r-3"] != 1 {
		t.Errorf("evaluations %v, want r-0..r-2 twice (before and after the failure) and r-3 once", seen)
	}
	alerts := alertCounts(t, js)
	for _, id := range []string{"r-0", "r-1", "r-2", "r-3"} {
		if alerts[alert.ID("every", id)] != 1 {
			t.Errorf("alert of %s stored %d times, want once", id, alerts[alert.ID("every", id)])
		}
	}
	if got := w.Stats().Retried.Load(); got != 4 {
		t.Errorf("Retried = %d, want the 4 events of the segment", got)
	}
}

// TestASegmentOfAnUnknownFormatIsHandedBackThenDeadLettered checks that a
// segment written by a newer version is not read as something else: it is
// handed back for a worker that knows its format, and once its deliveries
// are exhausted it is kept on DEAD.
func TestASegmentOfAnUnknownFormatIsHandedBackThenDeadLettered(t *testing.T) {
	nc, js, ctx := runStreams(t)
	m := &nats.Msg{Subject: bus.AuditSubject("c1"), Data: []byte("\x00binary"), Header: nats.Header{}}
	m.Header.Set(bus.HeaderSegment, "2")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	ev := newAlerting()
	runWorker(t, ctx, js, ev, engine.WorkerOptions{AckWait: time.Second, MaxDeliver: 2})
	logger := slog.New(slog.DiscardHandler)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = engine.DeadLetterExhausted(runCtx, nc, js, logger) })
	defer func() { stop(); wg.Wait() }()
	waittest.Until(t, 30*time.Second, "the segment kept on DEAD", func() bool {
		return natstest.Count(t, js, bus.StreamDead) == 1
	})
	if d := natstest.Messages(t, js, bus.StreamDead)[0]; d.Headers().Get(bus.HeaderSegment) != "2" || string(d.Data()) != "\x00binary" {
		t.Errorf("dead letter %q %v, want the segment as it was", d.Data(), d.Headers())
	}
	if len(ev.evaluated()) != 0 {
		t.Errorf("evaluated %v of a segment it cannot read", ev.evaluated())
	}
}

// BenchmarkWorkerConsumeSegments is BenchmarkWorkerConsume with the events
// stored in segments of bus.DefaultSegmentEvents, as the webhook stores
// them.
func BenchmarkWorkerConsumeSegments(b *testing.B) {
	_, js, ctx := runStreams(b)
	pub := bus.NewSegmentPublisher(js, "c1", bus.SegmentOptions{})
	for from := 0; from < b.N; from += 1000 {
		raws := make([]audit.Raw, 0, 1000)
		for i := from; i < min(from+1000, b.N); i++ {
			raw, err := audit.ParseRaw([]byte(eventLine(fmt.Sprintf("bench-%d", i))))
			if err != nil {
				b.Fatal(err)
			}
			raws = append(raws, raw)
		}
		if err := pub.Publish(ctx, raws); err != nil {
			b.Fatal(err)
		}
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
