package silence

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func openStore(t *testing.T) (*Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return st, js
}

func add(t *testing.T, st *Store, spec Spec, now time.Time) *Silence {
	t.Helper()
	spec.Comment, spec.Author = "maintenance", "alice"
	if spec.For == 0 {
		spec.For = time.Hour
	}
	s, err := New(spec, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// The bucket keeps a silence of the longest duration, and the records of
// what it silenced, for the retention after it ends.
func TestBucketOutlastsSilences(t *testing.T) {
	for _, kc := range bus.KVConfigs(bus.StreamOptions{}) {
		if kc.Bucket == bus.BucketSilences {
			if kc.TTL < MaxDuration+Retention {
				t.Errorf("bucket TTL %s is shorter than MaxDuration + Retention (%s)", kc.TTL, MaxDuration+Retention)
			}
			return
		}
	}
	t.Fatalf("no %s bucket in bus.KVConfigs", bus.BucketSilences)
}

func TestStoreAddListExpire(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	a := add(t, st, Spec{Rule: "privileged-container"}, t0)
	b := add(t, st, Spec{When: `alert.namespace == "kube-system"`, For: 2 * time.Hour}, t0.Add(time.Minute))

	got, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID || got[1].When != b.When || got[0].CreatedBy != "alice" {
		t.Fatalf("List = %+v, want %s then %s", got, a.ID, b.ID)
	}

	at := t0.Add(10 * time.Minute)
	exp, err := st.Expire(ctx, a.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	if exp.ExpiredAt == nil || !exp.ExpiredAt.Equal(at) {
		t.Errorf("expired at %v, want %s", exp.ExpiredAt, at)
	}
	again, err := st.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Active(at) || !again.End().Equal(at) {
		t.Errorf("stored silence still active at %s: %+v", at, again)
	}
	if _, err := st.Expire(ctx, a.ID, at.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "already ended at") {
		t.Errorf("expiring twice: %v, want already ended", err)
	}
	if _, err := st.Get(ctx, "0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := st.Expire(ctx, "not-an-id", at); err == nil || !strings.Contains(err.Error(), "is not a silence id") {
		t.Errorf("Expire of a malformed id: %v", err)
	}
}

// An alert is counted once however many destinations and notifiers record
// its silencing, and by whichever silences: each record stays for audit.
func TestStoreRecordCountsOnce(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	s1 := add(t, st, Spec{Rule: "privileged-container"}, t0)
	s2 := add(t, st, Spec{When: `alert.namespace == "kube-system"`}, t0)

	var (
		mu    sync.Mutex
		first int
		wg    sync.WaitGroup
	)
	for i := range 8 {
		wg.Go(func() {
			sil := []string{s1.ID, s2.ID}[i%2]
			ok, err := st.Record(ctx, Record{Silence: sil, Alert: "privileged-container/a1", Rule: "privileged-container",
				Dest: []string{"slack", "siem"}[i%2], At: t0.Add(time.Duration(i) * time.Second)})
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				first++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != 1 {
		t.Errorf("%d recordings counted the alert, want 1", first)
	}
	for _, id := range []string{s1.ID, s2.ID} {
		recs, err := st.Records(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Alert != "privileged-container/a1" || recs[0].Silence != id || recs[0].Rule != "privileged-container" {
			t.Errorf("records of %s: %+v", id, recs)
		}
	}
	ok, err := st.Record(ctx, Record{Silence: s1.ID, Alert: "privileged-container/a2", Rule: "privileged-container", Dest: "slack", At: t0})
	if err != nil || !ok {
		t.Errorf("another alert: counted %v, %v; want counted", ok, err)
	}
}

// A silence applies as soon as it is added, stops as soon as it is
// expired, and one in the bucket before the watch started is there once
// the set is ready.
func TestSetFollowsTheBucket(t *testing.T) {
	st, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	before := add(t, st, Spec{Rule: "secret-read-by-non-node"}, now.Add(-time.Minute))
	set := st.NewSet(time.Now, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-set.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("set not ready")
	}
	a := testAlert()
	other := testAlert()
	other.Rule = "secret-read-by-non-node"
	if m := set.Match(other, time.Now()); m == nil || m.ID != before.ID {
		t.Fatalf("silence stored before the watch does not hold: %v", m)
	}
	if m := set.Match(a, time.Now()); m != nil {
		t.Fatalf("alert silenced by %s before any silence for it", m.ID)
	}
	s := add(t, st, Spec{Rule: "privileged-container"}, time.Now().Add(-time.Second))
	waittest.Until(t, 5*time.Second, "new silence applied", func() bool { return set.Match(a, time.Now()) != nil })
	if _, err := st.Expire(context.Background(), s.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 5*time.Second, "expired silence lifted", func() bool { return set.Match(a, time.Now()) == nil })
}

// A silence this notifier cannot compile (written by a newer vigil, or by
// hand) is not honoured, and does not stop the others.
func TestSetSkipsWhatItCannotCompile(t *testing.T) {
	st, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	bad := `{"id":"00000000000000aa","when":"alert.nosuch == 1","createdBy":"x","createdAt":"` +
		now.Add(-time.Minute).UTC().Format(time.RFC3339) + `","endsAt":"` + now.Add(time.Hour).UTC().Format(time.RFC3339) + `","comment":"c"}`
	if _, err := st.kv.Put(ctx, keySilence+"00000000000000aa", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	good := add(t, st, Spec{Rule: "privileged-container"}, now.Add(-time.Minute))
	set := st.NewSet(time.Now, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-set.Ready()
	if m := set.Match(testAlert(), time.Now()); m == nil || m.ID != good.ID {
		t.Errorf("Match = %v, want %s", m, good.ID)
	}
	other := testAlert()
	other.Rule = "secret-read-by-non-node"
	if m := set.Match(other, time.Now()); m != nil {
		t.Errorf("the uncompilable silence %s matched", m.ID)
	}
}
