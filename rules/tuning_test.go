package rules

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// loadWithDefault loads the default pack together with user files.
func loadWithDefault(t *testing.T, files map[string]string) *Set {
	t.Helper()
	set, err := Load(LoadOptions{Paths: []string{writeFiles(t, files)}, Default: true})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return set
}

func secretGet(user string) *audit.Event {
	return &audit.Event{AuditID: "a-" + user, Stage: audit.StageResponseComplete, Verb: "get",
		User:           audit.UserInfo{Username: user},
		ObjectRef:      &audit.ObjectReference{Resource: "secrets", Namespace: "default", Name: "db"},
		ResponseStatus: &audit.Status{Code: 200}}
}

// verdicts returns, per rule id that matched ev, the exception that
// suppressed the match or "alert".
func verdicts(t *testing.T, set *Set, ev *audit.Event) map[string]string {
	t.Helper()
	ms, err := set.Eval(context.Background(), ev)
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.Rule.ID] = "alert"
		if m.Exception != "" {
			out[m.Rule.ID] = m.Exception
		}
	}
	return out
}

func TestExceptionsSuppressByName(t *testing.T) {
	set := compileOne(t, `rules:
  - id: secret-read
    severity: high
    condition: event.objectRef.resource == "secrets"
    exceptions:
      - name: cert-manager
        when: event.user.username == "system:serviceaccount:cert-manager:cert-manager"
      - name: ingress
        when: event.user.username.startsWith("system:serviceaccount:ingress-nginx:")
`)
	for user, want := range map[string]string{
		"system:serviceaccount:cert-manager:cert-manager": "cert-manager",
		"system:serviceaccount:ingress-nginx:controller":  "ingress",
		"mallory": "alert",
	} {
		if got := verdicts(t, set, secretGet(user))["secret-read"]; got != want {
			t.Errorf("%s: %q, want %q", user, got, want)
		}
	}
	r, _ := set.Rule("secret-read")
	if got := r.Exceptions(); !slices.Equal(got, []string{"cert-manager", "ingress"}) {
		t.Errorf("Exceptions() = %v", got)
	}
	try := set.Try(r, []*audit.Event{secretGet("system:serviceaccount:cert-manager:cert-manager")})
	if try.Fired || !slices.Equal(try.Excepted, []string{"cert-manager"}) {
		t.Errorf("Try = %+v, want not fired, excepted by cert-manager", try)
	}
}

func TestOverridesChangeOnlyWhatTheyName(t *testing.T) {
	set := loadWithDefault(t, map[string]string{"tuning.yaml": `overrides:
  - rule: secret-read-by-non-node
    exceptions:
      - name: ingress
        when: 'event.user.username.startsWith("system:serviceaccount:ingress-nginx:")'
    severity: medium
  - rule: namespace-created
    enabled: false
  - list: control_plane
    append: ["system:serviceaccount:tools:backup"]
`})
	def, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range def.Rules() {
		got, ok := set.Rule(r.ID)
		if !ok {
			t.Fatalf("rule %s lost", r.ID)
		}
		wantSev, wantEnabled := r.Severity, r.Enabled
		switch r.ID {
		case "secret-read-by-non-node":
			wantSev = "medium"
		case "namespace-created":
			wantEnabled = false
		}
		if got.Severity != wantSev || got.Enabled != wantEnabled {
			t.Errorf("%s: severity %s enabled %v, want %s %v", r.ID, got.Severity, got.Enabled, wantSev, wantEnabled)
		}
	}
	v := verdicts(t, set, secretGet("system:serviceaccount:ingress-nginx:controller"))
	if v["secret-read-by-non-node"] != "ingress" {
		t.Errorf("ingress controller: %v, want secret-read-by-non-node excepted by ingress", v)
	}
	if v := verdicts(t, set, secretGet("system:serviceaccount:tools:backup")); v["secret-read-by-non-node"] != "" {
		t.Errorf("appended control_plane member: %v, want no secret-read-by-non-node match", v)
	}
	if v := verdicts(t, set, secretGet("system:serviceaccount:web:app")); v["secret-read-by-non-node"] != "alert" {
		t.Errorf("application: %v, want secret-read-by-non-node to alert", v)
	}
	if v := verdicts(t, def, secretGet("system:serviceaccount:tools:backup")); v["secret-read-by-non-node"] != "alert" {
		t.Errorf("without the override: %v, want secret-read-by-non-node to alert", v)
	}
	results, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("pack test %s: %s", r.Case.Name, r.Why)
		}
	}
}

func TestMacroAppendIsOred(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml": `macros:
  trusted: event.user.username == "alice"
rules:
  - id: r
    severity: low
    condition: event.verb == "delete" && !macros.trusted
`,
		"b.yaml": `overrides:
  - macro: trusted
    append: event.user.username == "bob"
`})
	set, err := Load(LoadOptions{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]bool{"alice": false, "bob": false, "carol": true} {
		ev := &audit.Event{AuditID: user, Stage: audit.StageResponseComplete, Verb: "delete", User: audit.UserInfo{Username: user}}
		if got := verdicts(t, set, ev)["r"] == "alert"; got != want {
			t.Errorf("%s: alert %v, want %v", user, got, want)
		}
	}
}

func TestOverrideMistakesAreReportedAtTheirPlace(t *testing.T) {
	base := "lists:\n  control_plane: [a]\nmacros:\n  is_admin: event.user.username == \"admin\"\nrules:\n  - id: secret-read\n    severity: low\n    condition: \"true\"\n"
	cases := []struct{ name, file, want string }{
		{"unknown rule", "overrides:\n  - rule: secret-reed\n    severity: low\n",
			`o.yaml:2:11: override of unknown rule "secret-reed", did you mean "secret-read"?`},
		{"unknown list", "overrides:\n  - list: control_plan\n    append: [x]\n",
			`o.yaml:2:11: override of unknown list "control_plan", did you mean "control_plane"?`},
		{"unknown macro", "overrides:\n  - macro: is_admn\n    append: \"true\"\n",
			`o.yaml:2:12: override of unknown macro "is_admn", did you mean "is_admin"?`},
		{"rule field on a list", "overrides:\n  - list: control_plane\n    append: [x]\n    severity: low\n",
			"o.yaml:4:15: an override of a list takes only append"},
		{"append on a rule", "overrides:\n  - rule: secret-read\n    append: [x]\n",
			"o.yaml:3:13: secret-read: append changes lists and macros"},
		{"changes nothing", "overrides:\n  - rule: secret-read\n",
			`o.yaml:2:5: secret-read: override of rule "secret-read" changes nothing`},
		{"names two", "overrides:\n  - rule: secret-read\n    list: control_plane\n",
			"o.yaml:3:11: an override names one of rule, list or macro, not both rule and list"},
		{"names none", "overrides:\n  - severity: low\n",
			"o.yaml:2:5: an override must name the rule, list or macro it changes"},
		{"unknown key", "overrides:\n  - rule: secret-read\n    severty: low\n",
			`o.yaml:3:5: unknown field "severty", did you mean "severity"?`},
		{"condition is not overridable", "overrides:\n  - rule: secret-read\n    condition: \"false\"\n",
			`o.yaml:3:5: unknown field "condition"`},
		{"bad appended macro", "overrides:\n  - macro: is_admin\n    append: event.user.nme == \"x\"\n",
			`o.yaml:3:24: append to macro is_admin: unknown field "nme", did you mean "name"?`},
		{"exception name twice", "overrides:\n  - rule: secret-read\n    exceptions: [{name: a, when: \"true\"}, {name: a, when: \"false\"}]\n",
			`o.yaml:3:43: secret-read: exception "a" is given twice for this rule`},
		{"exception when not boolean", "overrides:\n  - rule: secret-read\n    exceptions: [{name: a, when: event.verb}]\n",
			"o.yaml:3:34: secret-read: exception a must be a boolean expression"},
		{"exception without when", "overrides:\n  - rule: secret-read\n    exceptions: [{name: a}]\n",
			`o.yaml:3:18: secret-read: exception "a" has no when`},
		{"suppress too long", "overrides:\n  - rule: secret-read\n    suppress: {for: 48h}\n",
			`o.yaml:3:21: secret-read: suppress for "48h" is not a positive duration up to 24h`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := problems(t, map[string]string{"a.yaml": base, "o.yaml": c.file})
			if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, c.want) }) {
				t.Errorf("problems:\n  %s\nwant one starting with\n  %s", strings.Join(got, "\n  "), c.want)
			}
		})
	}
}

func TestSuppressCannotJoinAThreshold(t *testing.T) {
	rule := "rules:\n  - id: burst\n    severity: low\n    condition: \"true\"\n    threshold: {count: 3, window: 1m}\n"
	got := problems(t, map[string]string{"a.yaml": rule + "    suppress: {for: 10m}\n"})
	if want := "a.yaml:6:15: burst: suppress cannot be combined with threshold"; !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, want) }) {
		t.Errorf("problems %v, want %s", got, want)
	}
	got = problems(t, map[string]string{"a.yaml": rule, "o.yaml": "overrides:\n  - rule: burst\n    suppress: {for: 10m}\n"})
	if want := "o.yaml:2:5: burst: suppress cannot be combined with threshold"; !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, want) }) {
		t.Errorf("problems %v, want %s", got, want)
	}
}

func TestSuppressWindowHoldsBackAndCarriesTheCount(t *testing.T) {
	s := &Suppress{For: 10 * time.Minute}
	var st SuppressState
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	step := func(id string, at time.Duration, wantAlert bool, wantCarried int) {
		t.Helper()
		f, _ := st.Observe(s, alert.Member{AuditID: id}, t0.Add(at))
		alerted, carried := f != nil, 0
		if f != nil {
			carried = f.Carried
		}
		if alerted != wantAlert || carried != wantCarried {
			t.Errorf("%s at %s: alert %v carried %d, want %v %d", id, at, alerted, carried, wantAlert, wantCarried)
		}
	}
	step("r1", 0, true, 0)
	step("r2", time.Minute, false, 0)
	step("r3", 2*time.Minute, false, 0)
	step("r2", 3*time.Minute, false, 0) // a later stage of r2: not counted again
	step("r1", 4*time.Minute, true, 0)  // a redelivery of the alerting request
	step("r4", 11*time.Minute, true, 2) // the window is over
	step("r5", 12*time.Minute, false, 0)
	step("r4", 13*time.Minute, true, 2)
	if st.Count != 1 {
		t.Errorf("count %d, want 1 held back in the second window", st.Count)
	}
}

func TestSuppressKeyIsEvaluatedPerGroup(t *testing.T) {
	set := compileOne(t, `rules:
  - id: denied
    severity: medium
    condition: event.responseStatus.code == 403
    suppress:
      by: [event.user.username, event.objectRef.resource]
      for: 10m
`)
	ev := &audit.Event{AuditID: "x", Stage: audit.StageResponseComplete, Verb: "get", User: audit.UserInfo{Username: "mallory"},
		ObjectRef: &audit.ObjectReference{Resource: "secrets"}, ResponseStatus: &audit.Status{Code: 403}}
	ms, err := set.Eval(context.Background(), ev)
	if err != nil || len(ms) != 1 {
		t.Fatalf("eval: %v %v", ms, err)
	}
	if !slices.Equal(ms[0].SuppressKey, []string{"mallory", "secrets"}) {
		t.Errorf("suppress key %v", ms[0].SuppressKey)
	}
}

func TestRuleTestFailsWhenTheRuleErrs(t *testing.T) {
	set := compileOne(t, `rules:
  - id: host-network
    severity: high
    condition: event.verb == "create" && event.requestObject.spec.hostNetwork == true
tests:
  - name: an event without the field does not match
    rule: host-network
    match: false
    event: {verb: create, objectRef: {resource: pods}, requestObject: {spec: {}}}
`)
	res, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Passed || !strings.Contains(res[0].Why, "the rule failed to evaluate; evaluation error: ") ||
		!strings.Contains(res[0].Why, "hostNetwork") {
		t.Errorf("result %+v, want a FAIL naming the evaluation error", res)
	}
}
