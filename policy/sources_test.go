package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/rules"
)

// testSource leaves out groups and impersonation, gives response codes in
// part (201 reads as 200), delivers ResponseComplete only, no reads unless
// a setting is on, and no bodies of configmaps.
var testSource = provider.Source{
	Name: "cloud",
	Fields: []provider.Field{
		{Path: "user.groups", Carriage: provider.Absent, Why: "no groups"},
		{Path: "impersonatedUser", Carriage: provider.Absent, Why: "no impersonation"},
		{Path: "responseStatus.code", Carriage: provider.Partial, Why: "classes only", As: func(ev *audit.Event) {
			if ev.ResponseStatus != nil && ev.ResponseStatus.Code < 400 {
				st := *ev.ResponseStatus
				st.Code = 200
				ev.ResponseStatus = &st
			}
		}},
		{Path: "requestURI", Carriage: provider.Partial, Why: "path only"},
	},
	Stages: []string{audit.StageResponseComplete},
	Gaps: []provider.Gap{
		{Verbs: []string{"get", "list", "watch"}, Unless: "reads are turned on", Why: "reads are extra"},
		{Resources: []string{"configmaps"}, Lost: []string{"requestObject"}, Why: "configmaps at Metadata"},
	},
}

const sourceRules = `
rules:
  - id: plain
    severity: low
    condition: event.verb == "delete" && event.objectRef.resource == "pods"
  - id: at-start
    severity: low
    stages: [RequestReceived]
    condition: event.verb == "delete"
  - id: reads-only
    severity: low
    condition: event.verb in ["get", "list"] && event.objectRef.resource == "secrets"
  - id: some-reads
    severity: low
    condition: event.verb in ["get", "delete"] && event.objectRef.resource == "secrets"
  - id: needs-impersonation
    severity: low
    condition: has(event.impersonatedUser)
  - id: groups-or-name
    severity: low
    condition: >
      event.verb == "create" && !(event.user.username.startsWith("system:node:") ||
      event.user.groups.exists(g, g == "system:nodes"))
  - id: created-201
    severity: low
    condition: event.verb == "create" && event.responseStatus.code == 201
  - id: succeeded
    severity: low
    condition: event.verb == "create" && event.responseStatus.code < 400
  - id: uri
    severity: low
    condition: event.verb == "create" && event.requestURI.startsWith("/api")
  - id: configmap-body
    severity: low
    condition: event.objectRef.resource == "configmaps" && event.verb == "create" && has(event.requestObject.data)
  - id: any-body
    severity: low
    condition: event.objectRef.resource in ["configmaps", "pods"] && event.verb == "create" && has(event.requestObject.data)
tests:
  - {name: impersonated, rule: needs-impersonation, match: true, event: {verb: get, user: {username: a}, impersonatedUser: {username: b}}}
  - {name: a person, rule: groups-or-name, match: true, event: {verb: create, user: {username: alice}}}
  - {name: a node, rule: groups-or-name, match: false, event: {verb: create, user: {username: "system:node:n1", groups: ["system:nodes"]}}}
  - {name: created, rule: created-201, match: true, event: {verb: create, responseStatus: {code: 201}}}
  - {name: created, rule: succeeded, match: true, event: {verb: create, responseStatus: {code: 201}}}
  - {name: failed, rule: succeeded, match: false, event: {verb: create, responseStatus: {code: 409}}}
  - {name: data, rule: configmap-body, match: true, event: {verb: create, objectRef: {resource: configmaps}, requestObject: {data: {a: b}}}}
  - {name: data, rule: any-body, match: true, event: {verb: create, objectRef: {resource: configmaps}, requestObject: {data: {a: b}}}}
`

func checkTestSource(t *testing.T) map[string]SourceResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(path, []byte(sourceRules), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(rules.LoadOptions{Paths: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]SourceResult{}
	for _, r := range CheckSource(testSource, set) {
		out[r.Rule] = r
	}
	return out
}

func TestCheckSourceTellsWhatEachRuleLoses(t *testing.T) {
	got := checkTestSource(t)
	cases := []struct {
		rule   string
		status Status
		says   []string
	}{
		{"plain", OK, nil},
		{"at-start", Blind, []string{"it reads stages RequestReceived, and cloud delivers ResponseComplete only"}},
		{"reads-only", Blind, []string{"cloud delivers no get, list, watch requests: reads are extra, unless reads are turned on"}},
		{"some-reads", Partial, []string{"cloud delivers no get, list, watch requests"}},
		// Its test stops matching once the impersonated user is gone.
		{"needs-impersonation", Blind, []string{"it reads impersonatedUser, which cloud leaves out: no impersonation",
			"0 of its 1 tests that expect a match still match as cloud delivers their events"}},
		// The username still tells a node: a loss, but its tests hold.
		{"groups-or-name", Partial, []string{"it reads user.groups, which cloud leaves out: no groups"}},
		{"created-201", Blind, []string{"it reads responseStatus.code, which cloud gives only in part: classes only",
			"0 of its 1 tests"}},
		// Success reads the same through the code's class: no loss.
		{"succeeded", OK, nil},
		// No way to tell how the path reads: a loss.
		{"uri", Partial, []string{"it reads requestURI, which cloud gives only in part: path only"}},
		{"configmap-body", Blind, []string{"it reads requestObject, which cloud does not log for configmaps: configmaps at Metadata"}},
		{"any-body", Partial, []string{"it reads requestObject, which cloud does not log for configmaps"}},
	}
	for _, c := range cases {
		r := got[c.rule]
		if r.Status != c.status {
			t.Errorf("%s: %s %q, want %s", c.rule, r.Status, r.Losses, c.status)
			continue
		}
		if len(c.says) == 0 && len(r.Losses) > 0 {
			t.Errorf("%s: losses %q, want none", c.rule, r.Losses)
		}
		for _, s := range c.says {
			if !slices.ContainsFunc(r.Losses, func(l string) bool { return strings.HasPrefix(l, s) }) {
				t.Errorf("%s: losses %q lack %q", c.rule, r.Losses, s)
			}
		}
	}
}

// What a user of each managed cluster checks first about the default
// pack.
func TestCheckSourceOnTheDefaultPack(t *testing.T) {
	set := defaultPack(t)
	status := map[string]map[string]Status{}
	for _, src := range provider.Sources() {
		status[src.Name] = map[string]Status{}
		for _, r := range CheckSource(src, set) {
			status[src.Name][r.Rule] = r.Status
		}
	}
	for _, c := range []struct {
		source, rule string
		want         Status
	}{
		{"gke", "impersonation-used", Blind},         // no impersonated user in the entry
		{"gke", "configmap-with-credentials", Blind}, // configmaps at Metadata
		{"gke", "secret-read-by-non-node", Blind},    // reads only with Data Access logs
		{"gke", "pod-exec-or-attach", Partial},       // exec as create is Admin Activity, as get is a read
		{"gke", "privileged-container", OK},          // pod bodies are logged
		{"gke", "cluster-admin-binding", OK},
		{"eks", "configmap-with-credentials", OK},
		{"aks", "secret-enumeration", OK},
		{"aks-admin", "secret-enumeration", Blind}, // gets only
		{"aks-admin", "secret-read-by-non-node", Partial},
		{"aks-admin", "privileged-container", OK},
	} {
		if got := status[c.source][c.rule]; got != c.want {
			t.Errorf("%s on %s: %s, want %s", c.rule, c.source, got, c.want)
		}
	}
	for _, src := range []string{"eks", "aks"} {
		for rule, s := range status[src] {
			if s != OK {
				t.Errorf("%s on %s: %s; it delivers the apiserver's events whole", rule, src, s)
			}
		}
	}
}
