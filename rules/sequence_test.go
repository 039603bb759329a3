package rules

import (
	"strings"
	"testing"
)

const grantThenWorkload = `rules:
  - id: grant-then-workload
    severity: high
    sequence:
      by: [event.user.username]
      within: 10m
      steps:
        - {name: grant, condition: 'event.objectRef.resource == "clusterrolebindings" && event.verb == "create"'}
        - {name: workload, condition: 'event.objectRef.resource == "daemonsets" && event.verb == "create"'}
`

func TestSequenceRuleTests(t *testing.T) {
	set := compileOne(t, grantThenWorkload+`tests:
  - name: a grant then a workload by the same user alerts
    rule: grant-then-workload
    match: true
    events:
      - {auditID: g, verb: create, user: {username: eve}, objectRef: {resource: clusterrolebindings}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: w, verb: create, user: {username: eve}, objectRef: {resource: daemonsets, namespace: kube-system}, requestReceivedTimestamp: "2026-01-01T00:05:00Z"}
  - name: the workload first, then the grant, does not
    rule: grant-then-workload
    match: false
    events:
      - {auditID: w, verb: create, user: {username: eve}, objectRef: {resource: daemonsets, namespace: kube-system}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: g, verb: create, user: {username: eve}, objectRef: {resource: clusterrolebindings}, requestReceivedTimestamp: "2026-01-01T00:05:00Z"}
  - name: arriving out of order, a grant then a workload by event time alerts
    rule: grant-then-workload
    match: true
    events:
      - {auditID: w, verb: create, user: {username: eve}, objectRef: {resource: daemonsets, namespace: kube-system}, requestReceivedTimestamp: "2026-01-01T00:05:00Z"}
      - {auditID: g, verb: create, user: {username: eve}, objectRef: {resource: clusterrolebindings}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
  - name: another user's workload does not
    rule: grant-then-workload
    match: false
    events:
      - {auditID: g, verb: create, user: {username: eve}, objectRef: {resource: clusterrolebindings}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: w, verb: create, user: {username: bob}, objectRef: {resource: daemonsets, namespace: kube-system}, requestReceivedTimestamp: "2026-01-01T00:05:00Z"}
  - name: past within it does not
    rule: grant-then-workload
    match: false
    events:
      - {auditID: g, verb: create, user: {username: eve}, objectRef: {resource: clusterrolebindings}, requestReceivedTimestamp: "2026-01-01T00:00:00Z"}
      - {auditID: w, verb: create, user: {username: eve}, objectRef: {resource: daemonsets, namespace: kube-system}, requestReceivedTimestamp: "2026-01-01T00:11:00Z"}
`)
	expectTestsPass(t, set)
	// The prefilter lets through what either step may match, and no more.
	r, _ := set.Rule("grant-then-workload")
	if got := strings.Join(r.Needs().Resources, ","); got != "clusterrolebindings,daemonsets" {
		t.Errorf("the rule's resources are %q", got)
	}
}

func TestSequenceProblemsAtTheirPlace(t *testing.T) {
	_, err := Compile([]File{{Name: "s.yaml", Data: []byte(`rules:
  - id: a
    severity: low
    sequence:
      within: 48h
      steps:
        - {name: one, condition: 'event.verb == "get"'}
  - id: b
    severity: low
    sequence:
      within: 5m
      steps:
        - {name: one, condition: 'true'}
        - {name: one, condition: 'true'}
  - id: c
    severity: low
    sequence:
      within: 5m
      steps:
        - {name: one, condition: 'event.verbb == "get"'}
        - {name: two, condition: 'true'}
`)}})
	if err == nil {
		t.Fatal("bad sequences loaded")
	}
	for _, want := range []string{
		`s.yaml:5:15: a: sequence within "48h" is not a positive duration up to 24h`,
		`s.yaml:7:9: a: sequence has 1 steps; it takes 2 to 5`,
		`s.yaml:20:41: c: sequence step one: unknown field "verbb", did you mean "verb"?`,
		`s.yaml:14:18: b: sequence step "one" is given twice`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
}
