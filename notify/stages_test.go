package notify

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
)

// The stages' own tests run each stage on alerts fetched from a real
// ALERTS stream, as a destination's pipeline would fetch them; these are
// their helpers.

// consumer creates dest's consumer with a given ack wait.
func (e *env) consumer(dest string, ackWait time.Duration) jetstream.Consumer {
	e.t.Helper()
	c, err := e.js.CreateOrUpdateConsumer(context.Background(), bus.StreamAlerts, consumerConfig(dest, ackWait))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// fetch takes n alerts from c as items.
func (e *env) fetch(c jetstream.Consumer, n int) []item {
	e.t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	var items []item
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			e.t.Fatal(err)
		}
		a := new(alert.Alert)
		if err := json.Unmarshal(msg.Data(), a); err != nil {
			e.t.Fatal(err)
		}
		items = append(items, item{msg: msg, meta: meta, a: a})
	}
	if len(items) != n {
		e.t.Fatalf("fetched %d alerts, want %d", len(items), n)
	}
	return items
}

// fetched stores alerts on ALERTS and fetches them back for dest.
func (e *env) fetched(dest string, alerts ...*alert.Alert) []item {
	e.t.Helper()
	c := e.consumer(dest, time.Minute)
	e.publish(alerts...)
	return e.fetch(c, len(alerts))
}

// kv is the notify bucket.
func (e *env) kv() jetstream.KeyValue {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), bus.BucketNotify)
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

func (e *env) settler(dest string) *settler {
	return &settler{
		js: e.js, dest: dest, retryDeadLetter: time.Minute,
		dead: e.m.NotifyDead.WithLabelValues(dest), logger: slog.New(slog.DiscardHandler),
	}
}

// ackPending is how many alerts dest holds unacknowledged.
func (e *env) ackPending(dest string) func() int {
	return func() int {
		c, err := e.js.Consumer(context.Background(), bus.StreamAlerts, ConsumerName(dest))
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		return info.NumAckPending
	}
}

// ids are the alert IDs of items, in order.
func ids(items []item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.a.ID
	}
	return out
}

// clock is a settable time for the stages' decisions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// notifierFunc adapts a function to Notifier, for stages that only need
// an outcome.
type notifierFunc func(ctx context.Context, alerts ...*alert.Alert) (bool, error)

func (f notifierFunc) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	return f(ctx, alerts...)
}
