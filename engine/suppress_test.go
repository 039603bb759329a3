package engine

import (
	"context"
	"fmt"
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

const suppressedRule = `rules:
  - id: denied
    severity: medium
    condition: event.responseStatus.code == 403
    suppress:
      by: [event.user.username]
      for: 10m
`

// request is one denied request of user, at sec seconds.
type request struct {
	user string
	sec  int
}

// probe is user's burst of n denied requests, one a second from sec.
func probe(user string, n, sec int) []request {
	out := make([]request, n)
	for i := range out {
		out[i] = request{user, sec + i}
	}
	return out
}

func TestSuppressionGivesTheSameAlertsWithOneWorkerOrThree(t *testing.T) {
	set := ruleSet(t, suppressedRule)
	run := func(t *testing.T, workers int) []*alert.Alert {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		store := NewKVThresholds(thresholdBucket(t, 0), KVOptions{})
		m := metrics.New(nil)
		evs := make([]*Evaluator, workers)
		for i := range evs {
			evs[i] = NewEvaluator(set, store, WithMetrics(m))
		}
		// Two users probe 12 times each inside the window, in two
		// rounds; mallory probes again after the window has passed.
		events := append(probe("mallory", 12, 0), probe("eve", 12, 0)...)
		events = append(events, probe("mallory", 3, 11*60)...)
		var (
			mu  sync.Mutex
			got []*alert.Alert
			wg  sync.WaitGroup
		)
		// Each worker takes every workers-th event; the window of one
		// user must be decided the same whichever worker sees what.
		// Events of one burst are fed in order, after the earlier burst.
		feed := func(batch []request) {
			for w := range workers {
				wg.Go(func() {
					for i := w; i < len(batch); i += workers {
						e := batch[i]
						as, err := evs[w].Evaluate(ctx, denied(e.sec, e.user, time.Duration(e.sec)*time.Second, "ResponseComplete"))
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
		}
		feed(events[:24])
		feed(events[24:])
		if n := testutil.ToFloat64(m.AlertsSuppressed.WithLabelValues("denied")); n != 24+3-3 {
			t.Errorf("vigil_alerts_suppressed_total{rule=denied} = %v, want 24", n)
		}
		return got
	}
	summary := func(as []*alert.Alert) []string {
		var out []string
		for _, a := range as {
			out = append(out, fmt.Sprintf("%s suppressed-before=%d id=%s", a.User, a.Suppressed, a.ID))
		}
		slices.Sort(out)
		return out
	}
	group := func(user string) string { return rules.GroupHash([]string{user}) }
	want := []string{
		"eve suppressed-before=0 id=denied/" + group("eve") + "/2024-02-19T01:00:00Z",
		"mallory suppressed-before=0 id=denied/" + group("mallory") + "/2024-02-19T01:00:00Z",
		"mallory suppressed-before=11 id=denied/" + group("mallory") + "/2024-02-19T01:10:00Z",
	}
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			as := run(t, workers)
			if got := summary(as); !slices.Equal(got, want) {
				t.Errorf("alerts %v, want %v", got, want)
			}
		})
	}
}

func TestSuppressionRepeatsTheAlertOfARedeliveredRequest(t *testing.T) {
	ctx := context.Background()
	ev := NewEvaluator(ruleSet(t, suppressedRule), NewMemoryThresholds())
	first, err := ev.Evaluate(ctx, denied(1, "mallory", 0, "ResponseComplete"))
	if err != nil || len(first) != 1 {
		t.Fatalf("first: %v %v", first, err)
	}
	if as, _ := ev.Evaluate(ctx, denied(2, "mallory", time.Second, "ResponseComplete")); len(as) != 0 {
		t.Errorf("a second request inside the window alerted: %v", as)
	}
	again, err := ev.Evaluate(ctx, denied(1, "mallory", 0, "ResponseComplete"))
	if err != nil || len(again) != 1 || again[0].ID != first[0].ID {
		t.Errorf("redelivery gave %v %v, want the same alert %s again", again, err, first[0].ID)
	}
}

func TestOneProbeOfDeniedSecretsRaisesAtMostTwoAlerts(t *testing.T) {
	ctx := context.Background()
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var got []string
	for i := range 36 {
		e := denied(i, "mallory", time.Duration(i)*2*time.Second, "ResponseComplete")
		e.Verb = []string{"get", "list"}[i%2]
		e.ObjectRef = &audit.ObjectReference{Resource: "secrets", Namespace: fmt.Sprintf("team-%d", i%6)}
		if e.Verb == "get" {
			e.ObjectRef.Name = fmt.Sprintf("s%d", i)
		}
		as, err := ev.Evaluate(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if alert.SeverityRank(a.Severity) >= alert.SeverityRank(alert.SeverityMedium) {
				got = append(got, a.Rule)
			}
		}
	}
	slices.Sort(got)
	if want := []string{"forbidden-burst", "secret-access-forbidden"}; !slices.Equal(got, want) {
		t.Errorf("medium or higher alerts %v, want %v", got, want)
	}
}

func TestSuppressionCountsARequestOnceAcrossWindows(t *testing.T) {
	ctx := context.Background()
	m := metrics.New(nil)
	ev := NewEvaluator(ruleSet(t, suppressedRule), NewMemoryThresholds(), WithMetrics(m))
	eval := func(i int, sec int) []*alert.Alert {
		t.Helper()
		as, err := ev.Evaluate(ctx, denied(i, "mallory", time.Duration(sec)*time.Second, "ResponseComplete"))
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	first := eval(1, 0)
	eval(2, 1)               // held in the first window
	second := eval(3, 11*60) // opens the second, telling of 2
	// Redeliveries of the first window's requests: its alert again, and
	// nothing counted twice.
	if again := eval(1, 0); len(again) != 1 || again[0].ID != first[0].ID {
		t.Errorf("redelivered opener of the first window gave %v, want its alert %s again", again, first[0].ID)
	}
	if as := eval(2, 1); len(as) != 0 {
		t.Errorf("redelivered held request alerted: %v", as)
	}
	third := eval(4, 25*60)
	if len(first) != 1 || len(second) != 1 || len(third) != 1 {
		t.Fatalf("alerts %v %v %v, want one per window", first, second, third)
	}
	if second[0].Suppressed != 1 || third[0].Suppressed != 0 {
		t.Errorf("suppressed %d then %d, want 1 then 0", second[0].Suppressed, third[0].Suppressed)
	}
	if n := testutil.ToFloat64(m.AlertsSuppressed.WithLabelValues("denied")); n != 1 {
		t.Errorf("vigil_alerts_suppressed_total = %v, want 1", n)
	}
}

func TestSuppressionHoldsNothingBackWhenItsGroupFails(t *testing.T) {
	ctx := context.Background()
	ev := NewEvaluator(ruleSet(t, `rules:
  - id: denied
    severity: medium
    condition: event.responseStatus.code == 403
    suppress:
      by: ['event.annotations["team"]']
      for: 10m
`), NewMemoryThresholds())
	var got []string
	for i, user := range []string{"alice", "bob"} {
		as, err := ev.Evaluate(ctx, denied(i, user, time.Duration(i)*time.Second, "ResponseComplete"))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			got = append(got, a.User)
		}
	}
	if !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("alerts for %v, want alice and bob each: a group that cannot be told holds nothing back", got)
	}
}
