package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"

	"github.com/vigil-k8s/vigil/internal/audit"
)

func compileOne(t *testing.T, text string) *Set {
	t.Helper()
	set, err := Compile([]File{{Name: "t.yaml", Data: []byte(text)}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return set
}

// conditionsSet makes one rule per condition, named c0, c1, ...
func conditionsSet(t *testing.T, conds ...string) *Set {
	t.Helper()
	var b strings.Builder
	b.WriteString("rules:\n")
	for i, c := range conds {
		fmt.Fprintf(&b, "  - id: c%d\n    severity: low\n    stages: [RequestReceived, ResponseStarted, ResponseComplete]\n    condition: %q\n", i, c)
	}
	return compileOne(t, b.String())
}

func matched(t *testing.T, set *Set, ev *audit.Event) []string {
	t.Helper()
	ms, err := set.Eval(context.Background(), ev)
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.Rule.ID)
	}
	return ids
}

func mustDecode(t *testing.T, js string) *audit.Event {
	t.Helper()
	ev, err := audit.Decode([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAbsentFieldsReadAsZeroValues(t *testing.T) {
	conds := []string{
		`event.objectRef.name == "" && event.objectRef.resource == ""`,
		`event.responseStatus.code == 0`,
		`size(event.user.groups) == 0 && size(event.sourceIPs) == 0`,
		`size(event.annotations) == 0 && event.annotations[?"x"].orValue("none") == "none"`,
		`event.impersonatedUser.username == ""`,
		`!has(event.objectRef) && !has(event.impersonatedUser) && !has(event.requestObject)`,
		`size(event.requestObject) == 0`,
	}
	set := conditionsSet(t, conds...)
	ev := mustDecode(t, `{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/healthz","user":{"username":"u"}}`)
	got := matched(t, set, ev)
	for i := range conds {
		if !slices.Contains(got, fmt.Sprintf("c%d", i)) {
			t.Errorf("condition %q did not hold on an event without those fields", conds[i])
		}
	}
}

func TestHasTellsPresentFromAbsent(t *testing.T) {
	set := conditionsSet(t,
		`has(event.objectRef) && has(event.objectRef.name) && !has(event.objectRef.subresource)`,
		`has(event.impersonatedUser) && event.impersonatedUser.username == "bob"`,
		`has(event.requestObject.spec) && !has(event.requestObject.status)`,
		`has(event.responseStatus.code)`,
	)
	ev := mustDecode(t, `{"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"impersonatedUser":{"username":"bob"},
		"objectRef":{"resource":"pods","name":"p"},"requestObject":{"spec":{}},"responseStatus":{"code":200}}`)
	if got := matched(t, set, ev); !slices.Equal(got, []string{"c0", "c1", "c2", "c3"}) {
		t.Errorf("matched %v, want all four", got)
	}
}

func TestDynamicObjectsAndLibraries(t *testing.T) {
	conds := []string{
		`event.requestObject.?spec.?replicas.orValue(0) == 3`,
		`event.requestObject.?spec.?missing.?deeper.orValue("d") == "d"`,
		`event.requestReceivedTimestamp > timestamp("2024-01-01T00:00:00Z") && event.requestReceivedTimestamp.getFullYear() == 2024`,
		`event.stageTimestamp - event.requestReceivedTimestamp == duration("2s")`,
		`event.sourceIPs.exists(ip, isIP(ip) && cidr("10.0.0.0/8").containsIP(ip))`,
		`url("https://example.com:8443/x").getPort() == "8443"`,
		`quantity(event.requestObject.spec.template.spec.containers[0].resources.limits.memory).isGreaterThan(quantity("1Gi"))`,
		`event.userAgent.find("[0-9]+\\.[0-9]+") == "1.29"`,
		`[1, 2, 3].isSorted() && "%s/%s".format([event.objectRef.namespace, event.objectRef.name]) == "ns/web"`,
		`event.annotations["authorization.k8s.io/decision"] == "allow"`,
		`event.user.extra["scopes"].exists(s, s == "admin")`,
	}
	set := conditionsSet(t, conds...)
	ev := mustDecode(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"create",
		"user":{"username":"u","extra":{"scopes":["read","admin"]}},"sourceIPs":["10.1.2.3"],"userAgent":"kubectl/v1.29.0",
		"objectRef":{"resource":"deployments","namespace":"ns","name":"web"},
		"annotations":{"authorization.k8s.io/decision":"allow"},
		"requestObject":{"spec":{"replicas":3,"template":{"spec":{"containers":[{"resources":{"limits":{"memory":"2Gi"}}}]}}}},
		"requestReceivedTimestamp":"2024-02-19T01:13:30Z","stageTimestamp":"2024-02-19T01:13:32Z"}`)
	got := matched(t, set, ev)
	for i := range conds {
		if !slices.Contains(got, fmt.Sprintf("c%d", i)) {
			t.Errorf("condition %q did not hold", conds[i])
		}
	}
}

func TestAllAuditAPIVersionsAreEvaluated(t *testing.T) {
	set := conditionsSet(t, `event.verb == "delete"`)
	for _, v := range []string{`"apiVersion":"audit.k8s.io/v1",`, `"apiVersion":"audit.k8s.io/v1beta1",`, ``} {
		ev := mustDecode(t, `{"kind":"Event",`+v+`"auditID":"a","stage":"ResponseComplete","verb":"delete","user":{"username":"u"}}`)
		if got := matched(t, set, ev); len(got) != 1 {
			t.Errorf("event with %q not evaluated", v)
		}
	}
}

func TestStagesAndEnabled(t *testing.T) {
	set := compileOne(t, `
rules:
  - id: default-stages
    severity: low
    condition: event.verb == "get"
  - id: early
    severity: low
    stages: [RequestReceived]
    condition: event.verb == "get"
  - id: off
    severity: low
    enabled: false
    condition: event.verb == "get"
`)
	for stage, want := range map[string][]string{
		"RequestReceived":  {"early"},
		"ResponseStarted":  {"default-stages"},
		"ResponseComplete": {"default-stages"},
		"Panic":            nil,
	} {
		ev := &audit.Event{AuditID: "a", Stage: stage, Verb: "get"}
		if got := matched(t, set, ev); !slices.Equal(got, want) {
			t.Errorf("stage %s matched %v, want %v", stage, got, want)
		}
	}
	if len(set.Rules()) != 3 {
		t.Errorf("Rules() has %d rules, want the disabled one too", len(set.Rules()))
	}
}

// countingProgram counts evaluations of a macro.
type countingProgram struct {
	cel.Program
	n *int
}

func (p countingProgram) Eval(in any) (ref.Val, *cel.EvalDetails, error) {
	*p.n++
	return p.Program.Eval(in)
}

func TestMacroIsEvaluatedOncePerEvent(t *testing.T) {
	set := compileOne(t, `
macros:
  is_get: event.verb == "get"
rules:
  - id: a
    severity: low
    condition: macros.is_get && event.user.username == "u"
  - id: b
    severity: low
    condition: macros.is_get || macros.is_get
  - id: c
    severity: low
    condition: '!macros.is_get'
`)
	var n int
	set.macros[0] = countingProgram{Program: set.macros[0], n: &n}
	got := matched(t, set, &audit.Event{AuditID: "x", Stage: "ResponseComplete", Verb: "get", User: audit.UserInfo{Username: "u"}})
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("matched %v, want a and b", got)
	}
	if n != 1 {
		t.Errorf("macro evaluated %d times for one event, want 1", n)
	}
	matched(t, set, &audit.Event{AuditID: "y", Stage: "ResponseComplete", Verb: "list"})
	if n != 2 {
		t.Errorf("macro evaluated %d times over two events, want 2", n)
	}
}

func TestEvalReportsFailingRulesAndKeepsOthers(t *testing.T) {
	set := conditionsSet(t, `event.requestObject.spec.replicas > 1`, `event.verb == "get"`)
	ms, err := set.Eval(context.Background(), &audit.Event{AuditID: "a", Stage: "ResponseComplete", Verb: "get"})
	var ee *EvalErrors
	if !errors.As(err, &ee) || len(ee.List) != 1 || ee.List[0].RuleID != "c0" {
		t.Fatalf("err = %v, want c0 failing", err)
	}
	if len(ms) != 1 || ms[0].Rule.ID != "c1" {
		t.Errorf("matches %v, want c1", ms)
	}
}

func TestPrefilterKeepsResultsOfUnfilteredEvaluation(t *testing.T) {
	set := compileOne(t, `
lists:
  rs: [pods, secrets]
macros:
  pods: event.objectRef.resource == "pods"
rules:
  - id: by-macro
    severity: low
    condition: macros.pods && event.verb == "create"
  - id: by-list
    severity: low
    condition: event.objectRef.resource in lists.rs || false
  - id: by-or
    severity: low
    condition: event.objectRef.resource == "nodes" || event.objectRef.resource == "pods"
  - id: unconstrained
    severity: low
    condition: event.objectRef.resource != "x"
  - id: negated
    severity: low
    condition: '!(event.objectRef.resource == "pods")'
`)
	want := map[string][]string{
		"pods":    {"by-macro", "by-list", "by-or", "unconstrained"},
		"secrets": {"by-list", "unconstrained", "negated"},
		"nodes":   {"by-or", "unconstrained", "negated"},
		"leases":  {"unconstrained", "negated"},
		"":        {"unconstrained", "negated"},
	}
	for res, w := range want {
		ev := &audit.Event{AuditID: "a", Stage: "ResponseComplete", Verb: "create"}
		if res != "" {
			ev.ObjectRef = &audit.ObjectReference{Resource: res}
		}
		if got := matched(t, set, ev); !slices.Equal(got, w) {
			t.Errorf("resource %q matched %v, want %v", res, got, w)
		}
	}
}

func TestRunTestsExplainsFailures(t *testing.T) {
	set := compileOne(t, `
rules:
  - id: burst
    severity: low
    condition: event.verb == "delete"
    output: '"deleted " + event.objectRef.name'
    threshold: {count: 3, window: 1m, by: [event.user.username]}
tests:
  - name: three deletes fire
    rule: burst
    match: true
    output: "deleted c"
    events:
      - {auditID: "1", verb: delete, user: {username: u}, objectRef: {name: a}, requestReceivedTimestamp: "2024-01-01T00:00:00Z"}
      - {auditID: "2", verb: delete, user: {username: u}, objectRef: {name: b}, requestReceivedTimestamp: "2024-01-01T00:00:10Z"}
      - {auditID: "3", verb: delete, user: {username: u}, objectRef: {name: c}, requestReceivedTimestamp: "2024-01-01T00:00:20Z"}
  - name: two users do not add up
    rule: burst
    match: true
    events:
      - {auditID: "1", verb: delete, user: {username: u}, requestReceivedTimestamp: "2024-01-01T00:00:00Z"}
      - {auditID: "2", verb: delete, user: {username: v}, requestReceivedTimestamp: "2024-01-01T00:00:10Z"}
      - {auditID: "3", verb: delete, user: {username: u}, requestReceivedTimestamp: "2024-01-01T00:00:20Z"}
  - name: wrong output
    rule: burst
    match: true
    output: "deleted a"
    events:
      - {auditID: "1", verb: delete, user: {username: u}, objectRef: {name: a}, requestReceivedTimestamp: "2024-01-01T00:00:00Z"}
      - {auditID: "2", verb: delete, user: {username: u}, objectRef: {name: b}, requestReceivedTimestamp: "2024-01-01T00:00:10Z"}
      - {auditID: "3", verb: delete, user: {username: u}, objectRef: {name: c}, requestReceivedTimestamp: "2024-01-01T00:00:20Z"}
`)
	res, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "expected a match, the rule did not match", `output "deleted c", expected "deleted a"`}
	for i, r := range res {
		if r.Passed != (want[i] == "") || r.Why != want[i] {
			t.Errorf("%q: passed=%v why=%q, want why %q", r.Case.Name, r.Passed, r.Why, want[i])
		}
	}
}
