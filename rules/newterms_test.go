package rules

import (
	"context"
	"strings"
	"testing"
)

func TestNewTermsProblemsAtTheirPlace(t *testing.T) {
	_, err := Compile([]File{{Name: "nt.yaml", Data: []byte(`rules:
  - id: a
    severity: low
    condition: "true"
    new_terms:
      fields: []
      learn: soon
  - id: b
    severity: low
    condition: "true"
    new_terms:
      fields: [event.user.username, event.userAgent]
      forget: 30s
      max_values: 0
      per: x
  - id: c
    severity: low
    condition: "true"
    new_terms: {fields: [event.nope]}
    suppress: {by: [event.verb], for: 1m}
`)}})
	if err == nil {
		t.Fatal("rules with bad new_terms loaded")
	}
	for _, want := range []string{
		`nt.yaml:6:15: a: new_terms fields must list at least one expression`,
		`nt.yaml:7:14: a: new_terms learn "soon" is not a duration`,
		`nt.yaml:13:15: b: new_terms forget "30s" is not a duration from 1m0s`,
		`nt.yaml:14:19: b: new_terms max_values "0" must be a whole number from 1 to 10000`,
		`nt.yaml:15:7: b: unknown field "per" (known: fields, by, learn, forget, max_values)`,
		`nt.yaml:19:16: c: new_terms cannot be combined with threshold or suppress`,
		`nt.yaml:19:32: c: new_terms field: unknown field "nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
}

func TestNewTermsRuleTestsJudgeTheLastEventAgainstTheHistory(t *testing.T) {
	set := compileOne(t, `rules:
  - id: first-exec
    severity: medium
    condition: event.objectRef.subresource == "exec"
    new_terms:
      fields: [event.user.username, event.objectRef.namespace]
tests:
  - name: an identity's first exec is learned, a second namespace alerts
    rule: first-exec
    match: true
    events:
      - {auditID: "1", verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec, namespace: a}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: "2", verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec, namespace: b}, requestReceivedTimestamp: "2026-01-01T00:01:00Z"}
  - name: a namespace exec'd before does not
    rule: first-exec
    match: false
    events:
      - {auditID: "1", verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec, namespace: a}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: "2", verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec, namespace: b}, requestReceivedTimestamp: "2026-01-01T00:01:00Z"}
      - {auditID: "3", verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec, namespace: b}, requestReceivedTimestamp: "2026-01-01T00:02:00Z"}
`)
	expectTestsPass(t, set)
}

func TestNewTermsWithEmptyByLearnsOnceForTheWholeRule(t *testing.T) {
	set := compileOne(t, `rules:
  - id: first-exec-by-anyone
    severity: medium
    condition: event.objectRef.subresource == "exec"
    new_terms:
      by: []
      fields: [event.user.username]
      learn: 1h
tests:
  - name: a user first seen after the rule learned alerts at once
    rule: first-exec-by-anyone
    match: true
    events:
      - {verb: create, user: {username: alice}, objectRef: {resource: pods, subresource: exec}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec}, requestReceivedTimestamp: "2026-01-01T02:00:00Z"}
  - name: a user seen while the rule learned does not
    rule: first-exec-by-anyone
    match: false
    events:
      - {verb: create, user: {username: alice}, objectRef: {resource: pods, subresource: exec}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec}, requestReceivedTimestamp: "2026-01-01T00:30:00Z"}
      - {verb: create, user: {username: bob}, objectRef: {resource: pods, subresource: exec}, requestReceivedTimestamp: "2026-01-01T02:00:00Z"}
`)
	r, _ := set.Rule("first-exec-by-anyone")
	if len(r.NewTerms.Entity) != 0 || len(r.NewTerms.Value) != 1 {
		t.Fatalf("entity %q value %q, want none and the username", r.NewTerms.Entity, r.NewTerms.Value)
	}
	expectTestsPass(t, set)
}

// expectTestsPass runs the set's rule tests and fails for each that fails.
func expectTestsPass(t *testing.T, set *Set) {
	t.Helper()
	res, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Passed {
			t.Errorf("%s: %s", r.Case.Name, r.Why)
		}
	}
}
