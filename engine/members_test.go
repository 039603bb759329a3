package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// memberIDs are the auditIDs of an alert's members, in its order.
func memberIDs(a *alert.Alert) []string {
	out := make([]string, len(a.Members))
	for i, m := range a.Members {
		out[i] = m.AuditID
	}
	return out
}

func reqIDs(user string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("req-%s-%04d", user, i))
	}
	return out
}

// A threshold alert tells its count, its window in seconds and the latest
// MaxMembers requests it counted, in time order.
func TestThresholdAlertCarriesItsLatestMembers(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var events []*audit.Event
	for i := range 20 {
		events = append(events, denied(i, "mallory", time.Duration(i)*time.Second, "ResponseComplete"))
	}
	got := alertsOf(t, ev, "forbidden-burst", events)
	if len(got) != 1 {
		t.Fatalf("got %v, want one alert", ids(got))
	}
	a := got[0]
	if a.Count != 20 || a.WindowSeconds != 300 || a.Window != "5m0s" {
		t.Errorf("count %d windowSeconds %d window %q, want 20, 300, 5m0s", a.Count, a.WindowSeconds, a.Window)
	}
	if want := reqIDs("mallory", 10, 20); !slices.Equal(memberIDs(a), want) {
		t.Errorf("members %v, want %v", memberIDs(a), want)
	}
	want := alert.Member{AuditID: "req-mallory-0012", Time: t0.Add(12 * time.Second), User: "mallory", Verb: "list", Resource: "pods", Namespace: "default"}
	if a.Members[2] != want {
		t.Errorf("member %+v, want %+v", a.Members[2], want)
	}
	// The redelivered firing request repeats the alert with its members.
	again := alertsOf(t, ev, "forbidden-burst", events[19:])
	if len(again) != 1 || !slices.Equal(memberIDs(again[0]), memberIDs(a)) {
		t.Errorf("the repeated alert has members %v, want %v", memberIDs(again[0]), memberIDs(a))
	}
}

// Workers sharing the KV store and seeing the same burst in any order
// agree on the alert and on its members.
func TestThresholdMembersDoNotDependOnArrivalOrder(t *testing.T) {
	set := defaultSet(t)
	var burst []*audit.Event
	for i := range 20 {
		burst = append(burst, denied(i, "mallory", time.Duration(i)*7*time.Second, "ResponseComplete"))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		store := NewKVThresholds(thresholdBucket(t, 0), KVOptions{})
		shuffled := slices.Clone(burst)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var (
			mu  sync.Mutex
			got []*alert.Alert
			wg  sync.WaitGroup
		)
		for w := range 3 {
			ev := NewEvaluator(set, store)
			wg.Go(func() {
				for i := w; i < len(shuffled); i += 3 {
					as, err := ev.Evaluate(ctx, shuffled[i])
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got = append(got, as...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		cancel()
		if len(got) != 1 || got[0].Rule != "forbidden-burst" {
			t.Fatalf("round %d: alerts %v, want one forbidden-burst", round, ids(got))
		}
		if want := reqIDs("mallory", 10, 20); !slices.Equal(memberIDs(got[0]), want) {
			t.Errorf("round %d: members %v, want %v", round, memberIDs(got[0]), want)
		}
	}
}

// The alert after a suppression window carries the earliest MaxMembers
// requests the window held back, whatever order they came in, and the
// window's length in seconds.
func TestSuppressionAlertCarriesWhatTheWindowHeldBack(t *testing.T) {
	ctx := context.Background()
	held := probe("mallory", 12, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 5 {
		ev := NewEvaluator(ruleSet(t, suppressedRule), NewMemoryThresholds())
		order := slices.Clone(held)
		if round > 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		events := []request{{"mallory", 0}}
		events = append(events, order...)
		events = append(events, request{"mallory", 11 * 60})
		var got []*alert.Alert
		for _, r := range events {
			as, err := ev.Evaluate(ctx, denied(r.sec, r.user, time.Duration(r.sec)*time.Second, "ResponseComplete"))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, as...)
		}
		if len(got) != 2 {
			t.Fatalf("round %d: alerts %v, want the first and the one after the window", round, ids(got))
		}
		if a := got[0]; len(a.Members) != 0 || a.Suppressed != 0 || a.WindowSeconds != 600 {
			t.Errorf("round %d: first alert has %d members, suppressed %d, windowSeconds %d; want 0, 0, 600", round, len(a.Members), a.Suppressed, a.WindowSeconds)
		}
		a := got[1]
		if a.Suppressed != 12 || a.WindowSeconds != 600 {
			t.Errorf("round %d: suppressed %d windowSeconds %d, want 12, 600", round, a.Suppressed, a.WindowSeconds)
		}
		if want := reqIDs("mallory", 1, 11); !slices.Equal(memberIDs(a), want) {
			t.Errorf("round %d: members %v, want %v", round, memberIDs(a), want)
		}
	}
}
