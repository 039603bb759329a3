package gke_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/gke"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/ingesttest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pubsubtest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pubsubtest.IgnoreLeaks()...)
}

const cluster = "prod"

type env struct {
	fake    *pubsubtest.Fake
	js      jetstream.JetStream
	metrics *metrics.Metrics
	logs    *logtest.Buffer
}

func newEnv(t *testing.T, noSub bool) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return &env{fake: pubsubtest.New(t, !noSub), js: js, metrics: metrics.New(nil), logs: &logtest.Buffer{}}
}

// running is one ingest process reading the subscription.
type running struct {
	*ingesttest.Running
	src    *gke.Source
	closed bool
}

func (e *env) start(t *testing.T, pub ingest.Publisher) *running {
	t.Helper()
	s, err := gke.New(context.Background(), gke.Options{
		Project: pubsubtest.Project, Subscription: pubsubtest.Subscription, Cluster: cluster,
		Retry: backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		// A message sent as the first process's stream closes never
		// arrives: Pub/Sub delivers it again once this has passed.
		AckExtension:  10 * time.Second,
		ClientOptions: e.fake.ClientOptions(), Metrics: e.metrics,
	}, slog.New(slog.NewTextHandler(e.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{src: s}
	// Registered before Start's, so run after it: the client is closed
	// once Run has returned.
	t.Cleanup(func() { r.stop(t) })
	r.Running = ingesttest.Start(t, s, pub)
	return r
}

// stop stops the process, then closes its Pub/Sub client.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.Stop(t)
	if r.closed {
		return
	}
	r.closed = true
	if err := r.src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// stalled stores the events of its first publish, then hangs without
// returning until its context ends: a process that stops between
// JetStream's PubAck and acknowledging the message to Pub/Sub.
type stalled struct {
	ingest.Publisher
	once   sync.Once
	stored chan struct{}
}

func (p *stalled) Publish(ctx context.Context, batch []audit.Raw) error {
	if err := p.Publisher.Publish(ctx, batch); err != nil {
		return err
	}
	p.once.Do(func() { close(p.stored) })
	<-ctx.Done()
	return ctx.Err()
}

// TestEveryEventOnceAcrossARestart: the first process stores events and
// stops before acknowledging their messages, which Pub/Sub delivers again
// to the next; copies the sink sent twice come too. Each event is in AUDIT
// once, and every message is acknowledged in the end.
func TestEveryEventOnceAcrossARestart(t *testing.T) {
	e := newEnv(t, false)
	want := map[string]bool{}
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("d-%d", i)
		want[id+"/ResponseComplete"] = true
		ids = append(ids, e.fake.Publish(pubsubtest.Deletion(id)))
	}
	// Pub/Sub delivers at least once: the same entry in a second message.
	ids = append(ids, e.fake.Publish(pubsubtest.Deletion("d-0")))

	p := &stalled{Publisher: bus.NewPublisher(e.js, cluster), stored: make(chan struct{})}
	first := e.start(t, p)
	select {
	case <-p.stored:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing published")
	}
	stored := natstest.StoredAudit(t, e.js)
	if len(stored) == 0 {
		t.Fatal("the publish returned, but AUDIT is empty")
	}
	for _, id := range ids {
		if m := e.fake.Srv.Message(id); m.Acks > 0 {
			t.Fatalf("message %s acknowledged before its events' publish returned", id)
		}
	}
	first.stop(t)

	later := e.fake.Publish(pubsubtest.Deletion("d-later"))
	want["d-later/ResponseComplete"] = true
	ids = append(ids, later)
	e.start(t, bus.NewPublisher(e.js, cluster))
	waittest.Until(t, 30*time.Second, "every message acknowledged", func() bool { return e.fake.Acked(ids...) })
	natstest.ExpectAuditExactlyOnce(t, e.js, want)
	redelivered := 0
	for _, id := range ids {
		if e.fake.Deliveries(id) > 1 {
			redelivered++
		}
	}
	if redelivered == 0 {
		t.Fatal("no message was delivered twice: the restart tested nothing")
	}
	if got := testutil.ToFloat64(e.metrics.IngestLastEvent.WithLabelValues(gke.Kind, cluster)); got == 0 {
		t.Error("last event time not set")
	}
}

// TestBadMessagesAreDeadLetteredAndAcked: what is not JSON, an entry of
// another Google service, an entry that does not convert and a list with a
// bad item each go to DEAD once, with the reason and where they came from,
// and are acknowledged, so they are not delivered for ever; the good
// events beside them are stored.
func TestBadMessagesAreDeadLetteredAndAcked(t *testing.T) {
	e := newEnv(t, false)
	compute := strings.Replace(string(pubsubtest.Deletion("c-1")), `"serviceName":"k8s.io"`, `"serviceName":"compute.googleapis.com"`, 1)
	compute = strings.ReplaceAll(compute, `"producer":"k8s.io"`, `"producer":"compute.googleapis.com"`)
	compute = strings.ReplaceAll(compute, "io.k8s.apps.v1.deployments.delete", "v1.compute.instances.delete")
	noID := strings.ReplaceAll(string(pubsubtest.Deletion("x")), `"x"`, `""`)
	bad := map[string]string{
		e.fake.Publish([]byte("deployment deleted")): "not JSON",
		e.fake.Publish([]byte(compute)):              "compute.googleapis.com",
		e.fake.Publish([]byte(noID)):                 "nothing identifies the request",
		// Any record the provider package reads is taken: here an
		// EventList whose second item has no auditID.
		e.fake.Publish([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` +
			`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"list-1","stage":"ResponseComplete","verb":"get"},` +
			`{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","verb":"get"}]}`)): "audit EventList: items[1]",
	}
	good := e.fake.Publish(pubsubtest.Deletion("ok-1"))
	e.start(t, bus.NewPublisher(e.js, cluster))

	ids := []string{good}
	for id := range bad {
		ids = append(ids, id)
	}
	waittest.Until(t, 30*time.Second, "every message acknowledged", func() bool { return e.fake.Acked(ids...) })
	natstest.ExpectAuditExactlyOnce(t, e.js, map[string]bool{"ok-1/ResponseComplete": true, "list-1/ResponseComplete": true})
	dead := natstest.Messages(t, e.js, bus.StreamDead)
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	for _, m := range dead {
		src := m.Headers().Get(bus.HeaderSource)
		id := src[strings.LastIndex(src, ":")+1:]
		want, ok := bad[id]
		if !ok || !strings.HasPrefix(src, "gke:projects/"+pubsubtest.Project+"/subscriptions/"+pubsubtest.Subscription+":") {
			t.Errorf("dead letter source %q does not name the subscription and a bad message", src)
			continue
		}
		if reason := m.Headers().Get(bus.HeaderReason); !strings.Contains(reason, want) {
			t.Errorf("dead letter of message %s: reason %q does not say %q", id, reason, want)
		}
		if string(m.Data()) != string(e.fake.Srv.Message(id).Data) {
			t.Errorf("dead letter of message %s does not keep it", id)
		}
	}
}

// TestMissingSubscriptionIsRetried: a subscription not yet created is
// logged and counted, and read once it exists.
func TestMissingSubscriptionIsRetried(t *testing.T) {
	e := newEnv(t, true)
	e.start(t, bus.NewPublisher(e.js, cluster))
	notFound := e.metrics.IngestErrors.WithLabelValues(gke.Kind, cluster, "not_found")
	waittest.Until(t, 30*time.Second, "not_found counted", func() bool { return testutil.ToFloat64(notFound) > 0 })
	if !strings.Contains(e.logs.String(), "no such subscription") {
		t.Errorf("log does not say the subscription is missing:\n%s", e.logs.String())
	}
	e.fake.Subscribe(t)
	id := e.fake.Publish(pubsubtest.Deletion("after"))
	waittest.Until(t, 30*time.Second, "message acknowledged", func() bool { return e.fake.Acked(id) })
	natstest.ExpectAuditExactlyOnce(t, e.js, map[string]bool{"after/ResponseComplete": true})
}

// TestOptionsAreChecked: a bad subscription or bound is refused at once,
// naming it.
func TestOptionsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		o    gke.Options
		want string
	}{
		{gke.Options{Project: pubsubtest.Project}, "subscription is required"},
		{gke.Options{Subscription: "vigil"}, "project is required"},
		{gke.Options{Subscription: "projects/a/topics/b"}, "neither an id nor"},
		{gke.Options{Project: "b", Subscription: "projects/a/subscriptions/s"}, `not in project "b"`},
		{gke.Options{Project: pubsubtest.Project, Subscription: pubsubtest.Subscription, MaxOutstandingMessages: -1}, "max_outstanding_messages must be positive"},
		{gke.Options{Project: pubsubtest.Project, Subscription: pubsubtest.Subscription, Endpoint: "https://pubsub.googleapis.com"}, "endpoint must be host:port"},
	} {
		_, err := gke.New(context.Background(), tc.o, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}
