package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

var t0 = time.Date(2024, 2, 19, 1, 0, 0, 0, time.UTC)

// denied is one 403 response to user at t0+offset.
func denied(i int, user string, offset time.Duration, stage string) *audit.Event {
	return &audit.Event{
		APIVersion: audit.APIVersionV1, Kind: "Event", Level: "Metadata",
		AuditID: fmt.Sprintf("req-%s-%04d", user, i), Stage: stage, Verb: "list",
		RequestURI:               "/api/v1/namespaces/default/pods",
		User:                     audit.UserInfo{Username: user, Groups: []string{"system:authenticated"}},
		ObjectRef:                &audit.ObjectReference{Resource: "pods", Namespace: "default"},
		ResponseStatus:           &audit.Status{Code: 403, Reason: "Forbidden"},
		RequestReceivedTimestamp: t0.Add(offset), StageTimestamp: t0.Add(offset + time.Millisecond),
	}
}

func secretGet(i int, user, name string, offset time.Duration) *audit.Event {
	return &audit.Event{
		APIVersion: audit.APIVersionV1, Kind: "Event", AuditID: fmt.Sprintf("get-%04d", i), Stage: "ResponseComplete",
		Verb: "get", User: audit.UserInfo{Username: user},
		ObjectRef:                &audit.ObjectReference{Resource: "secrets", Namespace: "default", Name: name},
		ResponseStatus:           &audit.Status{Code: 200},
		RequestReceivedTimestamp: t0.Add(offset),
	}
}

// alertsOf evaluates events in order and returns the alerts of one rule.
func alertsOf(t *testing.T, ev *Evaluator, rule string, events []*audit.Event) []*alert.Alert {
	t.Helper()
	var out []*alert.Alert
	for _, e := range events {
		got, err := ev.Evaluate(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			if a.Rule == rule {
				out = append(out, a)
			}
		}
	}
	return out
}

func TestThresholdFiresOnTheEventThatReachesTheCount(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var events []*audit.Event
	for i := range 20 {
		events = append(events, denied(i, "mallory", time.Duration(i)*time.Second, "ResponseComplete"))
	}
	if got := alertsOf(t, ev, "forbidden-burst", events[:19]); len(got) != 0 {
		t.Fatalf("19 denied requests raised %v", ids(got))
	}
	got := alertsOf(t, ev, "forbidden-burst", events[19:])
	if len(got) != 1 {
		t.Fatalf("the 20th denied request raised %v, want one alert", ids(got))
	}
	a := got[0]
	if a.Count != 20 || a.Window != "5m0s" || a.AuditID != events[19].AuditID || a.Severity != "medium" {
		t.Errorf("alert = count %d window %q auditID %q severity %q; want 20, 5m0s, %s, medium", a.Count, a.Window, a.AuditID, events[19].AuditID, a.Severity)
	}
}

func TestThresholdCountsARequestOnceWhateverItsStages(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var events []*audit.Event
	for i := range 19 {
		for _, st := range []string{audit.StageResponseStarted, audit.StageResponseComplete} {
			events = append(events, denied(i, "mallory", time.Duration(i)*time.Second, st))
		}
	}
	if got := alertsOf(t, ev, "forbidden-burst", events); len(got) != 0 {
		t.Fatalf("19 requests logged at two stages raised %v", ids(got))
	}
	last := denied(19, "mallory", 30*time.Second, audit.StageResponseStarted)
	got := alertsOf(t, ev, "forbidden-burst", []*audit.Event{last})
	if len(got) != 1 {
		t.Fatalf("20th request raised %v, want one alert", ids(got))
	}
	// The later stage of the request that fired gives the same alert again,
	// so a redelivery or a later stage cannot lose it; the id dedupes it.
	again := denied(19, "mallory", 30*time.Second, audit.StageResponseComplete)
	got2 := alertsOf(t, ev, "forbidden-burst", []*audit.Event{again})
	if len(got2) != 1 || got2[0].ID != got[0].ID {
		t.Errorf("later stage of the firing request gave %v, want the same id %s", ids(got2), got[0].ID)
	}
}

func TestThresholdBurstOrderDoesNotChangeAlerts(t *testing.T) {
	set := defaultSet(t)
	var burst []*audit.Event
	for i := range 27 {
		burst = append(burst, denied(i, "mallory", time.Duration(i)*3*time.Second, "ResponseComplete"))
	}
	for i := range 21 {
		burst = append(burst, denied(i, "eve", time.Duration(i)*2*time.Second, "ResponseComplete"))
	}
	inOrder := ids(alertsOf(t, NewEvaluator(set, NewMemoryThresholds()), "forbidden-burst", burst))
	slices.Sort(inOrder)
	if len(inOrder) != 2 {
		t.Fatalf("in order: %v, want one alert per identity", inOrder)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(burst)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := ids(alertsOf(t, NewEvaluator(set, NewMemoryThresholds()), "forbidden-burst", shuffled))
		slices.Sort(got)
		if !slices.Equal(got, inOrder) {
			t.Fatalf("shuffled burst raised %v, in order %v", got, inOrder)
		}
	}
}

func TestThresholdStaysQuietForTheWindowThenFiresAgain(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var first, quiet, later []*audit.Event
	for i := range 20 {
		first = append(first, denied(i, "mallory", time.Duration(i)*time.Second, "ResponseComplete"))
		quiet = append(quiet, denied(100+i, "mallory", 2*time.Minute+time.Duration(i)*time.Second, "ResponseComplete"))
		later = append(later, denied(200+i, "mallory", 6*time.Minute+time.Duration(i)*time.Second, "ResponseComplete"))
	}
	a1 := alertsOf(t, ev, "forbidden-burst", first)
	a2 := alertsOf(t, ev, "forbidden-burst", quiet)
	a3 := alertsOf(t, ev, "forbidden-burst", later)
	if len(a1) != 1 || len(a2) != 0 || len(a3) != 1 {
		t.Fatalf("alerts per burst = %d, %d, %d; want 1, 0 (quiet within the window), 1", len(a1), len(a2), len(a3))
	}
	if a1[0].ID == a3[0].ID {
		t.Errorf("two windows share alert id %s", a1[0].ID)
	}
}

func TestThresholdWindowSlides(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var events []*audit.Event
	for i := range 10 {
		events = append(events, denied(i, "mallory", time.Duration(i)*time.Second, "ResponseComplete"))
	}
	for i := range 10 {
		events = append(events, denied(10+i, "mallory", 6*time.Minute+time.Duration(i)*time.Second, "ResponseComplete"))
	}
	if got := alertsOf(t, ev, "forbidden-burst", events); len(got) != 0 {
		t.Fatalf("20 denied requests 6 minutes apart raised %v with a 5m window", ids(got))
	}
}

func TestThresholdDistinctCountsDifferentValues(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var events []*audit.Event
	for i := range 30 {
		events = append(events, secretGet(i, "system:serviceaccount:default:app", fmt.Sprintf("s%d", i%9), time.Duration(i)*time.Second))
	}
	if got := alertsOf(t, ev, "secret-enumeration", events); len(got) != 0 {
		t.Fatalf("9 distinct secrets read 30 times raised %v", ids(got))
	}
	got := alertsOf(t, ev, "secret-enumeration", []*audit.Event{secretGet(99, "system:serviceaccount:default:app", "s9", time.Minute)})
	if len(got) != 1 || got[0].Count != 10 {
		t.Fatalf("the 10th distinct secret raised %v, want one alert with count 10", ids(got))
	}
	node := secretGet(100, "system:node:n1", "x", time.Minute)
	node.User.Groups = []string{"system:nodes"}
	if got := alertsOf(t, ev, "secret-enumeration", []*audit.Event{node}); len(got) != 0 {
		t.Errorf("a node's read counted: %v", ids(got))
	}
}

// racingStore lets another worker write between a Get and the Update that
// follows it, once, to exercise compare-and-set.
type racingStore struct {
	ThresholdStore
	once      sync.Once
	race      func()
	conflicts int
	mu        sync.Mutex
}

func (s *racingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if s.race != nil {
		s.once.Do(s.race)
	}
	n, err := s.ThresholdStore.Update(ctx, key, value, rev)
	if errors.Is(err, ErrConflict) {
		s.mu.Lock()
		s.conflicts++
		s.mu.Unlock()
	}
	return n, err
}

func TestThresholdSharedStoreLosesNoCountUnderContention(t *testing.T) {
	set := defaultSet(t)
	shared := NewMemoryThresholds()
	other := NewEvaluator(set, shared)
	var otherAlerts []string
	store := &racingStore{ThresholdStore: shared}
	ev := NewEvaluator(set, store)
	for i := range 18 {
		if _, err := ev.Evaluate(context.Background(), denied(i, "mallory", time.Duration(i)*time.Second, "ResponseComplete")); err != nil {
			t.Fatal(err)
		}
	}
	// Arm the race only now: the next update is interrupted by another
	// worker counting request 18.
	store.race = func() {
		got, err := other.Evaluate(context.Background(), denied(18, "mallory", 18*time.Second, "ResponseComplete"))
		if err != nil {
			t.Error(err)
		}
		otherAlerts = ids(got)
	}
	got := alertsOf(t, ev, "forbidden-burst", []*audit.Event{denied(19, "mallory", 19*time.Second, "ResponseComplete")})
	if store.conflicts == 0 {
		t.Fatal("the interleaved write caused no conflict; the test did not test anything")
	}
	if len(otherAlerts) != 0 || len(got) != 1 || got[0].Count != 20 {
		t.Errorf("other worker alerts %v, this worker %v; want one alert counting all 20", otherAlerts, ids(got))
	}
}

func TestMemoryThresholdsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	m := metrics.New(nil)
	s := NewMemoryThresholdsSize(2, m)
	r1, err := s.Update(ctx, "a", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "a", []byte("x"), 0); !errors.Is(err, ErrConflict) {
		t.Errorf("create over an existing key: %v, want ErrConflict", err)
	}
	r2, err := s.Update(ctx, "a", []byte("2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "a", []byte("3"), r1); !errors.Is(err, ErrConflict) {
		t.Errorf("update at a stale revision: %v, want ErrConflict", err)
	}
	if v, rev, _ := s.Get(ctx, "a"); string(v) != "2" || rev != r2 {
		t.Errorf("Get = %q@%d, want 2@%d", v, rev, r2)
	}
	for _, k := range []string{"b", "c"} {
		if _, err := s.Update(ctx, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	if v, rev, _ := s.Get(ctx, "a"); v != nil || rev != 0 {
		t.Errorf("least recently updated key kept beyond the bound: %q@%d", v, rev)
	}
	if v, _, _ := s.Get(ctx, "c"); string(v) != "c" {
		t.Errorf("newest key lost")
	}
	if evicted := testutil.ToFloat64(m.ThresholdEvicted); evicted != 1 {
		t.Errorf("evictions reported %v, want 1", evicted)
	}
}
