package rules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// TestCostLimitIsConfigurable runs a comprehension over a request body: the
// default limit lets it through, a low limit stops it with a rule error
// (the rule does not match) instead of letting one event hold a worker.
func TestCostLimitIsConfigurable(t *testing.T) {
	file := []File{{Name: "cost.yaml", Data: []byte(`
rules:
  - id: many-env
    severity: low
    condition: >
      event.requestObject.?spec.?containers.orValue([]).exists(c,
        c.?env.orValue([]).exists(e, e.?name.orValue("") == "TOKEN"))
`)}}
	var env []string
	for range 2_000 {
		env = append(env, `{"name":"X","value":"y"}`)
	}
	ev := &audit.Event{AuditID: "a", Stage: audit.StageResponseComplete, Verb: "create",
		ObjectRef:     &audit.ObjectReference{Resource: "pods"},
		RequestObject: []byte(`{"spec":{"containers":[{"env":[` + strings.Join(env, ",") + `,{"name":"TOKEN"}]}]}}`),
	}
	ctx := context.Background()

	set, err := CompileWith(file, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := set.Eval(ctx, ev); err != nil || len(ms) != 1 {
		t.Fatalf("default limit: %d matches, %v; want the rule to match", len(ms), err)
	}

	set, err = CompileWith(file, Limits{Cost: 1_000})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := set.Eval(ctx, ev)
	var ee *EvalErrors
	if len(ms) != 0 || !errors.As(err, &ee) || len(ee.List) != 1 || ee.List[0].RuleID != "many-env" {
		t.Fatalf("cost limit 1000: %d matches, %v; want no match and one error of rule many-env", len(ms), err)
	}
	if !strings.Contains(ee.Error(), "cost") {
		t.Errorf("error %q does not say the cost limit was hit", ee.Error())
	}
}

// TestObjectLimitIsConfigurable: a requestObject above the limit reads as
// absent, so a rule on its content does not match; under it, it does.
func TestObjectLimitIsConfigurable(t *testing.T) {
	dir := writeFiles(t, map[string]string{"obj.yaml": `
rules:
  - id: privileged
    severity: high
    condition: >
      event.requestObject.?spec.?containers.orValue([]).exists(c,
        c.?securityContext.?privileged.orValue(false) == true)
`})
	body := `{"kind":"Pod","spec":{"containers":[{"name":"a","securityContext":{"privileged":true}}]},"pad":"` + strings.Repeat("x", 2000) + `"}`
	ev := &audit.Event{AuditID: "a", Stage: audit.StageResponseComplete, Verb: "create",
		ObjectRef: &audit.ObjectReference{Resource: "pods"}, RequestObject: []byte(body)}
	for _, c := range []struct {
		limit int
		match bool
	}{{0, true}, {len(body), true}, {len(body) - 1, false}} {
		m := metrics.New(nil)
		set, err := Load(LoadOptions{Paths: []string{dir}, Limits: Limits{ObjectBytes: c.limit}, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := set.Eval(context.Background(), ev)
		if err != nil || (len(ms) == 1) != c.match {
			t.Errorf("object of %d bytes, limit %d: %d matches, %v; want match %v", len(body), c.limit, len(ms), err, c.match)
		}
		over := testutil.ToFloat64(m.LimitExceeded.WithLabelValues("max_object_bytes"))
		if got, want := int64(over), int64(map[bool]int{true: 0, false: 1}[c.match]); got != want {
			t.Errorf("limit %d: object over the limit counted %d times, want %d", c.limit, got, want)
		}
	}
}
