package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/rules"
)

// bodyReaders are the default rules whose conditions read requestObject,
// listed by hand from rules/default so that the analysis is checked against
// something it did not produce.
func bodyReaders() []string {
	return []string{
		"nodeport-service-created", "ingress-without-tls",
		"cluster-admin-binding", "privileged-role-binding", "anonymous-binding",
		"role-with-wildcard", "role-with-pod-exec", "role-with-write-privileges",
		"role-with-escalation-verbs", "role-with-nodes-proxy",
		"configmap-with-credentials",
		"privileged-container", "sensitive-hostpath-mount", "host-namespace-pod",
		"dangerous-capabilities", "pod-created-in-kube-namespace",
	}
}

func defaultPack(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func load(t *testing.T, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func byRule(results []Result) map[string]Result {
	out := map[string]Result{}
	for _, r := range results {
		out[r.Rule] = r
	}
	return out
}

func TestDefaultRulesNeedWhatTheirConditionsRead(t *testing.T) {
	set := defaultPack(t)
	for _, r := range set.Rules() {
		n := r.Needs()
		if want := slices.Contains(bodyReaders(), r.ID); n.RequestObject != want {
			t.Errorf("%s: reads requestObject = %v, want %v", r.ID, n.RequestObject, want)
		}
		if n.ResponseObject {
			t.Errorf("%s: reads responseObject, but no default rule does", r.ID)
		}
	}
	pc, _ := set.Rule("privileged-container")
	n := pc.Needs()
	if want := []string{"pods", "podtemplates", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs", "replicationcontrollers"}; !slices.Equal(n.Resources, want) {
		t.Errorf("privileged-container resources %v, want %v (through macros.pod_spec_write and lists.pod_carriers)", n.Resources, want)
	}
	if want := []string{"", "ephemeralcontainers"}; !slices.Equal(n.Subresources, want) {
		t.Errorf("privileged-container subresources %v, want %v", n.Subresources, want)
	}
	if want := []string{"create", "update", "patch"}; !slices.Equal(n.Verbs, want) {
		t.Errorf("privileged-container verbs %v, want %v", n.Verbs, want)
	}
	dd, _ := set.Rule("deployment-deleted-in-default")
	if n := dd.Needs(); !slices.Equal(n.Namespaces, []string{"default"}) || !slices.Equal(n.Verbs, []string{"delete"}) {
		t.Errorf("deployment-deleted-in-default pins namespaces %v and verbs %v, want [default] and [delete]", n.Namespaces, n.Verbs)
	}
	imp, _ := set.Rule("impersonation-used")
	if n := imp.Needs(); n.Resources != nil || n.Verbs != nil {
		t.Errorf("impersonation-used pins resources %v verbs %v; it matches any request", n.Resources, n.Verbs)
	}
}

func TestMetadataOnlyPolicyBlindsExactlyTheRulesThatReadBodies(t *testing.T) {
	set := defaultPack(t)
	results := Check(load(t, "testdata/metadata-only.yaml"), set)
	if len(results) != len(set.Rules()) {
		t.Fatalf("%d results for %d rules", len(results), len(set.Rules()))
	}
	for _, r := range results {
		if slices.Contains(bodyReaders(), r.Rule) {
			if r.Status != Blind || r.Needs != "Request" {
				t.Errorf("%s: %s (needs %s), want blind (needs Request)", r.Rule, r.Status, r.Needs)
			}
			if want := "rules[0] (level Metadata) logs it below Request"; r.Reason != want {
				t.Errorf("%s: reason %q, want %q", r.Rule, r.Reason, want)
			}
			continue
		}
		if r.Status != OK || r.Needs != "Metadata" {
			t.Errorf("%s: %s (needs %s): %s; want ok (needs Metadata)", r.Rule, r.Status, r.Needs, r.Reason)
		}
	}
}

func TestPolicyLoggingOnlyNodesBodiesIsPartialForOtherUsers(t *testing.T) {
	results := byRule(Check(load(t, "testdata/nodes-only.yaml"), defaultPack(t)))
	nodes := "rules[1] (level RequestResponse, userGroups [system:nodes])"
	for _, id := range []string{"deployment-deleted-in-default", "privileged-container"} {
		r := results[id]
		if r.Status != Partial {
			t.Errorf("%s: %s, want partial", id, r.Status)
		}
		if !strings.Contains(r.Reason, "only where "+nodes+" applies") || !strings.Contains(r.Reason, "rules[2] (level None) does not log it") {
			t.Errorf("%s: reason %q does not say that only %s logs it and rules[2] drops the rest", id, r.Reason, nodes)
		}
		if !slices.Equal(r.PolicyRules, []int{2}) {
			t.Errorf("%s: responsible policy rules %v, want [2]", id, r.PolicyRules)
		}
	}
	if r := results["privileged-container"]; r.Needs != "Request" {
		t.Errorf("privileged-container needs %s, want Request", r.Needs)
	}
	if r := results["secret-read-by-non-node"]; r.Status != OK || r.Reason != "logged by rules[0] (level Metadata, resources [secrets])" {
		t.Errorf("secret-read-by-non-node: %s: %s; want ok, logged by rules[0]", r.Status, r.Reason)
	}
}

// The policy shipped in deploy/ is meant to be the one to start from: it
// must leave no default rule blind or partial.
func TestShippedPolicyLetsEveryDefaultRuleFire(t *testing.T) {
	set := defaultPack(t)
	results := Check(load(t, "../deploy/apiserver/policy.yaml"), set)
	var got, want []string
	for _, r := range results {
		got = append(got, r.Rule+" "+string(r.Status)+" "+r.Needs)
	}
	for _, r := range set.Rules() {
		need := "Metadata"
		if slices.Contains(bodyReaders(), r.ID) {
			need = "Request"
		}
		want = append(want, r.ID+" ok "+need)
	}
	if !slices.Equal(got, want) {
		t.Errorf("deploy/apiserver/policy.yaml:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	bodies := byRule(results)["privileged-container"].Reason
	if !strings.HasPrefix(bodies, "logged by rules[5] (level Request, verbs [create, update, patch]") {
		t.Errorf("privileged-container: %q, want it logged by the Request rule, rules[5]", bodies)
	}
}

func TestStagesAllOmittedMakeARuleBlind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  omitStages: [ResponseStarted, ResponseComplete]
  resources:
  - group: ""
    resources: [secrets]
- level: Metadata
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := byRule(Check(load(t, path), defaultPack(t)))["secret-read-by-non-node"]
	if r.Status != Blind || !strings.Contains(r.Reason, "rules[0] (level Metadata, resources [secrets], omitStages [ResponseStarted, ResponseComplete]) omits its stages ResponseStarted, ResponseComplete") {
		t.Errorf("secret-read-by-non-node: %s: %s; want blind for its omitted stages", r.Status, r.Reason)
	}
}

func TestNoiseDropsDoNotHideRulesOnOtherResources(t *testing.T) {
	// A rule on any resource is probed against what the policy does not
	// single out, but a drop of everything a group does still shows.
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources:
  - group: ""
    resources: [events]
- level: None
  userGroups: ["system:serviceaccounts"]
- level: Metadata
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := byRule(Check(load(t, path), defaultPack(t)))["impersonation-used"]
	if r.Status != Partial || !slices.Equal(r.PolicyRules, []int{1}) {
		t.Errorf("impersonation-used: %s %v: %s; want partial because of rules[1] only", r.Status, r.PolicyRules, r.Reason)
	}
}

func TestInvalidPolicyIsRejectedWithItsFileAndProblem(t *testing.T) {
	_, err := Load("testdata/invalid.yaml")
	if err == nil {
		t.Fatal("a policy with level Loud loaded")
	}
	if msg := err.Error(); !strings.Contains(msg, "testdata/invalid.yaml") || !strings.Contains(msg, "Loud") {
		t.Errorf("error %q names neither the file nor the bad level", msg)
	}
	if _, err := Load("testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "testdata/missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestMisspeltPolicyFieldIsAnError(t *testing.T) {
	// kube-apiserver would drop "resourcs" and log every request at
	// RequestResponse; a check that went along would call that fine.
	_, err := Parse([]byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resourcs: [{group: \"\", resources: [pods]}]\n- level: None\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "rules[0].resourcs"`) {
		t.Errorf("error %v, want the unknown field named", err)
	}
}
