package quiet_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/quiet"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// streams provisions vigil's streams and buckets on a server of the
// test's, returning the source bucket.
func streams(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), bus.BucketSources)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// run runs the watches, raising on ALERTS, until the returned stop.
func run(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue, watches ...*quiet.Watch) (stop func()) {
	t.Helper()
	publish := func(ctx context.Context, a *alert.Alert) error {
		return engine.PublishAlerts(ctx, js, []*alert.Alert{a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range watches {
		wg.Go(func() { _ = w.Run(ctx, kv, publish) })
	}
	return func() { cancel(); wg.Wait() }
}

// TestAnUnreadableStateIsReplaced: a value vigil never wrote under a
// source's key is replaced, and the source is still watched.
func TestAnUnreadableStateIsReplaced(t *testing.T) {
	js, kv := streams(t)
	if _, err := kv.Put(context.Background(), "file.garbage", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	w := quiet.New(quiet.Source{Key: "file.garbage", Name: "file /a.log", Cluster: "test", After: time.Second}, nil, nil)
	defer run(t, js, kv, w)()
	waittest.Until(t, 30*time.Second, "the silence", func() bool { return natstest.Count(t, js, bus.StreamAlerts) > 0 })
}

// TestReplicasOfOneSourceAlertOnce is two ingest replicas behind one
// webhook: the apiserver keeps its connection to one of them, so the
// other stores nothing, and that is no silence; when the one stops too,
// the silence is stored on ALERTS once, and so is its end.
func TestReplicasOfOneSourceAlertOnce(t *testing.T) {
	js, kv := streams(t)
	src := quiet.Source{Key: "webhook.test", Name: "the webhook of cluster test", Cluster: "test", After: time.Second}
	busy, idle := quiet.New(src, nil, nil), quiet.New(src, nil, nil)
	defer run(t, js, kv, busy, idle)()

	alerts := func() map[string]alert.Alert {
		out := map[string]alert.Alert{}
		for _, m := range natstest.Messages(t, js, bus.StreamAlerts) {
			var a alert.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Fatal(err)
			}
			out[a.Rule] = a
		}
		return out
	}
	// Events for three intervals at the busy replica only.
	for end := time.Now().Add(3 * src.After); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		busy.Saw(time.Now())
	}
	if n := natstest.Count(t, js, bus.StreamAlerts); n != 0 {
		t.Fatalf("%d alerts while one replica stored events: %v", n, alerts())
	}
	waittest.Until(t, 30*time.Second, "the silence", func() bool { return natstest.Count(t, js, bus.StreamAlerts) > 0 })
	busy.Saw(time.Now())
	waittest.Until(t, 30*time.Second, "its end", func() bool { return natstest.Count(t, js, bus.StreamAlerts) > 1 })
	got := alerts()
	if n := natstest.Count(t, js, bus.StreamAlerts); n != 2 || len(got) != 2 {
		t.Fatalf("%d alerts stored, want the silence and its end: %v", n, got)
	}
	s, r := got[quiet.RuleSilent], got[quiet.RuleResumed]
	if s.Severity != alert.SeverityHigh || r.Severity != alert.SeverityInfo || s.Cluster != "test" || s.RunbookURL != quiet.RunbookURL {
		t.Errorf("alerts: %+v", got)
	}
	// Both name one silence: the source and when its last event arrived.
	if strings.TrimPrefix(s.ID, quiet.RuleSilent) != strings.TrimPrefix(r.ID, quiet.RuleResumed) {
		t.Errorf("silence %s ended by %s", s.ID, r.ID)
	}
}
