package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pubsubtest"
)

// The Pub/Sub client, linked through the gke source, leaves goroutines of
// its own behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, pubsubtest.IgnoreLeaks()...) }

func TestEnsureStreamsConcurrentlyCreatesEachOnce(t *testing.T) {
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		_, js := natstest.Connect(t, srv.ClientURL())
		wg.Go(func() { errs <- bus.EnsureStreams(ctx, js, bus.StreamOptions{Replicas: 1}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("EnsureStreams: %v", err)
		}
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	// 3 streams + 7 KV buckets (KV_vigil_*).
	if len(names) != 10 {
		t.Fatalf("streams = %v, want AUDIT, ALERTS, DEAD and seven KV buckets", names)
	}
}

func TestPublisherDeduplicatesByAuditIDAndStage(t *testing.T) {
	js, ctx := runStreams(t)
	pub := bus.NewPublisher(js, "prod.eu")
	var batch []audit.Raw
	for i := range 100 {
		for _, stage := range []string{"ResponseStarted", "ResponseComplete"} {
			line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-%d","stage":%q,"verb":"get"}`, i, stage)
			r, err := audit.ParseRaw([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, r)
		}
	}
	// The same batch twice: a retry after a lost ack must not duplicate.
	for range 2 {
		if err := pub.Publish(ctx, batch); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if err := pub.DeadLetter(ctx, "file:x:1", "bad", []byte("{")); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 200 {
		t.Fatalf("AUDIT holds %d messages, want 200", info.State.Msgs)
	}
	if got := info.State.Subjects["audit.prod_eu.events"]; got != 200 {
		t.Fatalf("subject audit.prod_eu.events holds %d, want 200 (subjects %v)", got, info.State.Subjects)
	}
	dead, err := js.Stream(ctx, bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(ctx, "dead.ingest.prod_eu")
	if err != nil {
		t.Fatalf("dead letter not stored: %v", err)
	}
	if m.Header.Get(bus.HeaderSource) != "file:x:1" || m.Header.Get(bus.HeaderReason) != "bad" {
		t.Fatalf("dead letter headers = %v", m.Header)
	}
}

// TestEnsureStreamsBoundsTheThresholdBucket: engine.max_threshold_groups
// becomes the bucket's own bound — at most that many messages, the oldest
// discarded — on a new bucket and on one created before, unbounded, by an
// older vigil; a process without the option leaves the bound alone.
func TestEnsureStreamsBoundsTheThresholdBucket(t *testing.T) {
	js, ctx := runStreams(t)
	kv, err := js.KeyValue(ctx, bus.BucketThresholds)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := kv.Create(ctx, fmt.Sprintf("k%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	check := func(wantMax int64) {
		t.Helper()
		st, err := js.Stream(ctx, bus.KVStream(bus.BucketThresholds))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.MaxMsgs != wantMax || info.Config.Discard != jetstream.DiscardOld {
			t.Fatalf("bucket stream: max_msgs %d, discard %v; want %d, old", info.Config.MaxMsgs, info.Config.Discard, wantMax)
		}
		if info.State.Msgs > uint64(wantMax) {
			t.Fatalf("bucket holds %d keys, bound %d", info.State.Msgs, wantMax)
		}
	}
	// Several processes at once, as at a rolling start.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		_, js := natstest.Connect(t, js.Conn().ConnectedUrl())
		wg.Go(func() { errs <- bus.EnsureStreams(ctx, js, bus.StreamOptions{MaxThresholdGroups: 10}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	check(10)
	// The oldest keys went; the newest are kept.
	if _, err := kv.Get(ctx, "k00"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("oldest key: %v, want not found", err)
	}
	if _, err := kv.Get(ctx, "k29"); err != nil {
		t.Errorf("newest key: %v", err)
	}
	// A KV handle still binds to the bounded bucket, and a new key pushes
	// out the oldest instead of being refused.
	kv, err = js.KeyValue(ctx, bus.BucketThresholds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "new", []byte("v")); err != nil {
		t.Fatalf("creating a key in the full bucket: %v", err)
	}
	check(10)

	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{MaxThresholdGroups: 20}); err != nil {
		t.Fatal(err)
	}
	check(20)
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	check(20)
}

// runStreams starts a JetStream server with vigil's streams.
func runStreams(t testing.TB) (jetstream.JetStream, context.Context) {
	t.Helper()
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return js, ctx
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":              "nats://127.0.0.1:4222",
		"nats://alice:s3cret@nats:4222":      "nats://alice:xxxxx@nats:4222",
		"nats://t0ken@nats:4222":             "nats://xxxxx@nats:4222",
		"nats://a:p@n1:4222, nats://n2:4222": "nats://a:xxxxx@n1:4222,nats://n2:4222",
		"nats://a:p%zz@n1:4222":              "(unparsable URL with credentials)",
	} {
		if got := bus.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConnectSaysWhy: a refused connection is reported as such, not as
// nats.go's "no servers available".
func TestConnectSaysWhy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, _, err = bus.Connect("nats://" + addr)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Connect to a closed port: %v, want the dial error naming %s on one line", err, addr)
	}
}
