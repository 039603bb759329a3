package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules"
)

const newSourceRule = `rules:
  - id: token-new-source
    severity: high
    condition: event.user.username.startsWith("system:serviceaccount:")
    new_terms:
      fields: [event.user.username, 'event.sourceIPs.size() > 0 ? event.sourceIPs[0] : ""']
      learn: 24h
      forget: 720h
`

// tokenUse is service account sa reading a secret from ip, at offset.
func tokenUse(i int, sa, ip string, offset time.Duration) *audit.Event {
	return &audit.Event{
		APIVersion: audit.APIVersionV1, Kind: "Event", AuditID: fmt.Sprintf("use-%s-%06d", sa, i), Stage: "ResponseComplete",
		Verb: "get", User: audit.UserInfo{Username: "system:serviceaccount:apps:" + sa}, SourceIPs: []string{ip},
		ObjectRef:                &audit.ObjectReference{Resource: "secrets", Namespace: "apps", Name: "db"},
		ResponseStatus:           &audit.Status{Code: 200},
		RequestReceivedTimestamp: t0.Add(offset), StageTimestamp: t0.Add(offset),
	}
}

func TestNewTermsAlertOnceOnANewSourceAndAgainAfterForget(t *testing.T) {
	for _, store := range []string{"memory", "jetstream"} {
		t.Run(store, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			th := NewMemoryThresholds()
			if store == "jetstream" {
				th = NewKVThresholds(thresholdBucket(t, 0), KVOptions{})
			}
			e := NewEvaluator(ruleSet(t, newSourceRule), th)
			eval := func(ev *audit.Event) []*alert.Alert {
				t.Helper()
				as, err := e.Evaluate(ctx, ev)
				if err != nil {
					t.Fatal(err)
				}
				return as
			}
			// 10,000 benign uses over two days by five service accounts,
			// each from its own two addresses, both seen while learning.
			n := 0
			for i := range 10_000 {
				sa := fmt.Sprintf("sa%d", i%5)
				ip := fmt.Sprintf("10.0.%d.%d", i%5, i%2)
				at := time.Duration(i) * 48 * time.Hour / 10_000
				if as := eval(tokenUse(i, sa, ip, at)); len(as) != 0 {
					t.Fatalf("benign use %d from %s alerted: %s", i, ip, as[0].Output)
				}
				n++
			}
			stolen := tokenUse(n, "sa3", "203.0.113.9", 49*time.Hour)
			first := eval(stolen)
			if len(first) != 1 || first[0].Rule != "token-new-source" {
				t.Fatalf("the token from a new address gave %d alerts, want 1", len(first))
			}
			if again := eval(tokenUse(n+1, "sa3", "203.0.113.9", 50*time.Hour)); len(again) != 0 {
				t.Fatalf("the same address again alerted: %v", ids(again))
			}
			// The redelivered request that alerted gives its alert again,
			// under the same id, so that a crash before publishing loses
			// nothing and a repeat is dropped by its id.
			if re := eval(stolen); len(re) != 1 || re[0].ID != first[0].ID {
				t.Fatalf("the redelivered request gave %v, want %s again", ids(re), first[0].ID)
			}
			// Another account from that address is new for that account.
			if other := eval(tokenUse(n+2, "sa1", "203.0.113.9", 51*time.Hour)); len(other) != 1 {
				t.Fatalf("another account from the address gave %d alerts, want 1", len(other))
			}
			// Unseen for 31 days, the address is new again.
			after := eval(tokenUse(n+3, "sa3", "203.0.113.9", 50*time.Hour+31*24*time.Hour))
			if len(after) != 1 || after[0].ID == first[0].ID {
				t.Fatalf("after forget the address gave %v, want one new alert", ids(after))
			}
		})
	}
}

func TestNewTermsOutOfOrderLearnsFromTheEarliestEvent(t *testing.T) {
	ctx := context.Background()
	e := NewEvaluator(ruleSet(t, newSourceRule), NewMemoryThresholds())
	// The entity's first event arrives last: what came before it in
	// arrival but after it in time is inside its learning.
	for i, ev := range []*audit.Event{
		tokenUse(1, "sa", "10.0.0.2", 2*time.Hour),
		tokenUse(2, "sa", "10.0.0.3", 3*time.Hour),
		tokenUse(0, "sa", "10.0.0.1", 0),
	} {
		as, err := e.Evaluate(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		// The first two arrive with nothing earlier seen: learned as the
		// entity's first sighting, then within a day of it.
		if len(as) != 0 {
			t.Fatalf("event %d alerted while learning", i)
		}
	}
}

func TestNewTermsSameAlertsWithOneWorkerOrThree(t *testing.T) {
	set := ruleSet(t, newSourceRule)
	var events []*audit.Event
	for i := range 300 {
		sa := fmt.Sprintf("sa%d", i%3)
		at := time.Duration(i) * time.Minute * 10
		events = append(events, tokenUse(i, sa, fmt.Sprintf("10.1.%d.%d", i%3, i/60), at))
	}
	one, three := workersAlerts(t, set, events, 1, false), workersAlerts(t, set, events, 3, false)
	// Each account moves to another address every 10 hours: those first
	// used at 30 and 40 hours are past the day of learning.
	if len(one) != 6 {
		t.Errorf("one worker raised %d alerts, want 6", len(one))
	}
	if !slices.Equal(one, three) {
		t.Errorf("three workers raised %v, one worker %v", three, one)
	}
}

func TestNewTermsBoundedPerEntity(t *testing.T) {
	set := ruleSet(t, `rules:
  - id: ua
    severity: low
    condition: "true"
    new_terms:
      fields: [event.user.username, event.userAgent]
      max_values: 50
`)
	m := metrics.New(nil)
	th := NewMemoryThresholds()
	e := NewEvaluator(set, th, WithMetrics(m))
	ctx := context.Background()
	for i := range 500 {
		ev := tokenUse(i, "sa", "10.0.0.1", time.Duration(i)*time.Second)
		ev.UserAgent = fmt.Sprintf("flood/%d", i)
		if _, err := e.Evaluate(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.TermsEvicted.WithLabelValues("ua")); got != 450 {
		t.Errorf("vigil_new_terms_values_evicted_total = %v, want 450", got)
	}
	r, _ := set.Rule("ua")
	val, _, err := th.Get(ctx, rulesTermsKey(r, "system:serviceaccount:apps:sa"))
	if err != nil || len(val) == 0 {
		t.Fatalf("no state: %v", err)
	}
	if len(val) > 50*120 {
		t.Errorf("one entity's state is %d bytes for 50 values", len(val))
	}
}

func rulesTermsKey(r *rules.Rule, entity ...string) string { return rules.TermsKey(r, entity) }

// workersAlerts evaluates events with workers evaluators sharing one
// JetStream KV store, each taking every workers-th event (newest first
// when reversed), and returns the ids of the alerts raised, sorted.
func workersAlerts(t *testing.T, set *rules.Set, events []*audit.Event, workers int, reversed bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := NewKVThresholds(thresholdBucket(t, 0), KVOptions{})
	var mu sync.Mutex
	got := map[string]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		e := NewEvaluator(set, store)
		wg.Go(func() {
			for n := w; n < len(events); n += workers {
				i := n
				if reversed {
					i = len(events) - 1 - n
				}
				as, err := e.Evaluate(ctx, events[i])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, a := range as {
					got[a.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return slices.Sorted(maps.Keys(got))
}
