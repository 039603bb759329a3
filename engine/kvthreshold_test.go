package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

// thresholdBucket is the threshold bucket of a fresh embedded JetStream,
// bounded to limit groups as `vigil run` and `vigil worker` provision it.
func thresholdBucket(t *testing.T, limit int) jetstream.KeyValue {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{MaxThresholdGroups: limit}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bus.BucketThresholds)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestKVThresholdGroupsBoundedByTheBucket(t *testing.T) {
	const limit, flood = 50, 500
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv := thresholdBucket(t, limit)
	m := metrics.New(nil)
	evicted := counter{m.ThresholdEvicted}
	store := NewKVThresholds(kv, KVOptions{GroupLimit: limit, Metrics: m})
	if err := store.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	set := defaultSet(t)

	// Two workers share the bucket, as two worker processes would, and
	// flood it with one refused request from each of 500 users.
	var wg sync.WaitGroup
	var floodAlerts atomic.Int64
	for w := range 2 {
		ev := NewEvaluator(set, store)
		wg.Go(func() {
			for i := w; i < flood; i += 2 {
				got, err := ev.Evaluate(ctx, denied(i, fmt.Sprintf("flood-%03d", i), time.Duration(i)*time.Millisecond, "ResponseComplete"))
				if err != nil {
					t.Error(err)
					return
				}
				floodAlerts.Add(int64(len(got)))
			}
		})
	}
	wg.Wait()
	if floodAlerts.Load() != 0 {
		t.Errorf("the flood raised %d alerts, want none", floodAlerts.Load())
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Values() > limit {
		t.Fatalf("the bucket holds %d groups after %d distinct ones, want at most %d", st.Values(), flood, limit)
	}
	// Every group created past the bound evicted one: at least 450 here, and
	// the estimate is exact while no other process writes the bucket.
	if got := evicted.Load(); got < flood-limit {
		t.Errorf("evictions counted %d, want at least %d", got, flood-limit)
	}

	// A real burst after the flood, with the flood going on (two new groups
	// between its requests, 38 in all, fewer than the bound), alerts once:
	// its group is updated on every request, so it is never the least
	// recently updated one.
	ev := NewEvaluator(set, store)
	var burst []string
	for i := range 20 {
		got, err := ev.Evaluate(ctx, denied(i, "mallory", time.Second+time.Duration(i)*time.Second, "ResponseComplete"))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			if a.Rule == "forbidden-burst" {
				burst = append(burst, a.ID)
			}
		}
		if i < 19 {
			for j := range 2 {
				n := flood + 2*i + j
				if _, err := ev.Evaluate(ctx, denied(n, fmt.Sprintf("flood-%03d", n), time.Second, "ResponseComplete")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if len(burst) != 1 {
		t.Fatalf("the burst after the flood raised %v, want exactly one alert", burst)
	}

	// Run reports the bucket's size for vigil_threshold_groups.
	runCtx, stop := context.WithCancel(ctx)
	var run sync.WaitGroup
	run.Go(func() { _ = store.Run(runCtx) })
	waittest.Until(t, 10*time.Second, "a poll to report the groups", func() bool { return testutil.ToFloat64(m.ThresholdGroups) > 0 })
	n := uint64(testutil.ToFloat64(m.ThresholdGroups))
	stop()
	run.Wait()
	if n == 0 || n > limit {
		t.Errorf("vigil_threshold_groups reported %d, want between 1 and %d", n, limit)
	}
	t.Logf("figures: %d distinct groups through a bucket bounded to %d: %d evictions counted, %d groups kept", flood+38+1, limit, evicted.Load(), n)
}

// TestKVThresholdsEvictedKeyStartsOver: a worker that read a group before
// the server evicted it fails its compare-and-set, reads the group again as
// absent and creates it: no error, only the partial count lost.
func TestKVThresholdsEvictedKeyStartsOver(t *testing.T) {
	const limit = 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := thresholdBucket(t, limit)
	m := metrics.New(nil)
	evicted := counter{m.ThresholdEvicted}
	s := NewKVThresholds(kv, KVOptions{GroupLimit: limit, Metrics: m})
	rev, err := s.Update(ctx, "victim", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range limit {
		if _, err := s.Update(ctx, fmt.Sprintf("other-%d", i), []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if evicted.Load() != 1 {
		t.Errorf("evictions counted %d, want 1", evicted.Load())
	}
	if _, err := s.Update(ctx, "victim", []byte("2"), rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("update of an evicted group at its old revision: %v, want ErrConflict", err)
	}
	if v, r, err := s.Get(ctx, "victim"); err != nil || v != nil || r != 0 {
		t.Fatalf("evicted group reads %q@%d, %v; want absent", v, r, err)
	}
	if _, err := s.Update(ctx, "victim", []byte("1"), 0); err != nil {
		t.Fatalf("creating the evicted group again: %v", err)
	}
	// An update of a group in place evicts nothing: the bucket replaces the
	// group's message before it applies its bound.
	v, r, err := s.Get(ctx, "victim")
	if err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	before := evicted.Load()
	if _, err := s.Update(ctx, "victim", []byte("2"), r); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Values() != limit || evicted.Load() != before {
		t.Errorf("after an in-place update: %d groups (want %d), evictions %d → %d (want unchanged)", st.Values(), limit, before, evicted.Load())
	}
	for i := 1; i < limit; i++ { // other-0 was evicted to re-create victim
		if v, _, err := s.Get(ctx, fmt.Sprintf("other-%d", i)); err != nil || v == nil {
			t.Errorf("other-%d lost by an in-place update: %q, %v", i, v, err)
		}
	}
}

// counter reads a Prometheus counter the way the tests read an atomic.
type counter struct{ c prometheus.Counter }

func (c counter) Load() int64 { return int64(testutil.ToFloat64(c.c)) }
