package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/rules"
)

// excludeNodes are the default rules whose conditions leave out node
// identities (through macros.node_identity or macros.system_identity, the
// latter also in rbac.yaml's role_write and binding_write) or match only
// anonymous requests, listed by hand from rules/default.
func excludeNodes() []string {
	return []string{
		"anonymous-request-allowed", "node-created-by-non-node", "csr-approved", "webhook-configuration-changed",
		"secret-enumeration", "serviceaccount-created-in-kube-namespace", "namespace-created", "namespace-deleted",
		"configmap-created", "configmap-deleted", "serviceaccount-created", "serviceaccount-deleted",
		"service-created", "service-deleted", "privileged-role-binding", "role-with-wildcard", "role-with-pod-exec",
		"role-with-write-privileges", "role-with-escalation-verbs", "role-with-nodes-proxy", "system-role-modified",
		"role-created", "role-deleted", "rolebinding-created", "rolebinding-deleted", "secret-read-by-non-node",
		"secrets-listed-cluster-wide", "secret-created", "secret-deleted", "serviceaccount-token-requested",
		"pod-created-in-kube-namespace", "daemonset-created", "cronjob-created", "deployment-created", "deployment-deleted",
	}
}

func TestPolicyLoggingOnlyNodesLeavesRulesThatExcludeNodesBlind(t *testing.T) {
	set := defaultPack(t)
	results := byRule(Check(load(t, "testdata/system-nodes-only.yaml"), set))
	for _, r := range set.Rules() {
		got := results[r.ID]
		want := Partial
		if slices.Contains(excludeNodes(), r.ID) {
			want = Blind
		}
		if got.Status != want {
			t.Errorf("%s: %s: %s; want %s", r.ID, got.Status, got.Reason, want)
		}
	}
	// secret-enumeration, a threshold, has its exclusion in the condition
	// like the others.
	r := results["secret-read-by-non-node"]
	if want := "rules[1] (level None) does not log it; rules[0] (level RequestResponse, userGroups [system:nodes]) logs only users its condition excludes"; r.Reason != want {
		t.Errorf("secret-read-by-non-node: reason %q, want %q", r.Reason, want)
	}
	if !slices.Equal(r.PolicyRules, []int{1}) {
		t.Errorf("secret-read-by-non-node: responsible policy rules %v, want [1]", r.PolicyRules)
	}
}

// check compiles one rule with the default pack's lists and macros and
// checks it against policy.
func check(t *testing.T, policy, condition string) Result {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"+policy), 0o600); err != nil {
		t.Fatal(err)
	}
	rulePath := filepath.Join(dir, "rule.yaml")
	if err := os.WriteFile(rulePath, []byte(fmt.Sprintf("rules:\n  - id: r\n    title: r\n    severity: low\n    condition: %q\n", condition)), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(rules.LoadOptions{Paths: []string{rulePath}, Default: true})
	if err != nil {
		t.Fatal(err)
	}
	return byRule(Check(load(t, path), set))["r"]
}

func TestUserConditionsMeetPolicyUsersAndGroups(t *testing.T) {
	const (
		nodes = "- level: Metadata\n  userGroups: [system:nodes]\n- level: None\n"
		// a policy rule on users names them; the groups the apiserver
		// adds follow from the names
		kubeSystemSAs = "- level: Metadata\n  userGroups: [system:serviceaccounts:kube-system]\n- level: None\n"
		authenticated = "- level: Metadata\n  userGroups: [system:authenticated]\n- level: None\n"
		alice         = "- level: Metadata\n  users: [alice]\n- level: None\n"
		masters       = "- level: None\n  userGroups: [system:masters]\n- level: Metadata\n"
	)
	for _, c := range []struct {
		policy, condition string
		want              Status
	}{
		// A kubelet is system:node:<name> in system:nodes: either test
		// leaves it out.
		{nodes, `event.verb == "delete" && !event.user.username.startsWith("system:node:")`, Blind},
		{nodes, `event.verb == "delete" && !("system:nodes" in event.user.groups)`, Blind},
		{nodes, `event.verb == "delete" && !event.user.groups.exists(g, g in lists.node_groups)`, Blind},
		{nodes, `event.verb == "delete" && event.user.username != "system:node:n1"`, Partial},
		{nodes, `event.verb == "delete" && event.user.username.startsWith("system:node:")`, OK},
		{nodes, `event.verb == "delete" && macros.node_identity`, OK},
		{nodes, `event.verb == "delete" && event.user.username == "system:node:n1"`, OK},
		// Exclusions that cannot be read leave the rule partial, never
		// blind.
		{nodes, `event.verb == "delete" && !event.user.username.matches("^system:node:")`, Partial},
		{nodes, `!(macros.node_identity && event.verb == "delete")`, Partial},
		{kubeSystemSAs, `event.user.username.startsWith("system:serviceaccount:kube-system:")`, OK},
		{kubeSystemSAs, `event.user.username.startsWith("system:serviceaccount:")`, Partial},
		{kubeSystemSAs, `event.user.username.startsWith("system:serviceaccount:kube-system:") && event.user.username.endsWith("-controller")`, OK},
		{kubeSystemSAs, `event.verb == "get" && !macros.system_identity`, Blind},
		// The controllers' service accounts, and kube-controller-manager's
		// own identity, which is no service account.
		{kubeSystemSAs, `event.user.username in lists.workload_controllers`, Partial},
		{kubeSystemSAs, `event.user.username in lists.workload_controllers && event.user.username.startsWith("system:serviceaccount:")`, OK},
		{authenticated, `event.user.username == "system:anonymous"`, Blind},
		{authenticated, `"system:unauthenticated" in event.user.groups`, Blind},
		{authenticated, `event.verb == "get"`, Partial},
		{alice, `event.user.username == "alice"`, OK},
		{alice, `event.user.username in ["alice", "bob"]`, Partial},
		{alice, `event.user.username != "alice" && event.verb == "get"`, Blind},
		{masters, `"system:masters" in event.user.groups`, Blind},
		{masters, `!("system:masters" in event.user.groups)`, OK},
		{masters, `event.verb == "get"`, Partial},
	} {
		if r := check(t, c.policy, c.condition); r.Status != c.want {
			t.Errorf("%s\nunder\n%s: %s: %s; want %s", c.condition, c.policy, r.Status, r.Reason, c.want)
		}
	}
}

func TestBlindForUsersNamesThePolicyRuleTheConditionExcludes(t *testing.T) {
	r := check(t, "- level: None\n  users: [bob]\n- level: Metadata\n  users: [alice]\n- level: None\n", `event.user.username != "alice"`)
	want := "rules[0] (level None, users [bob]) does not log it; rules[2] (level None) does not log it; rules[1] (level Metadata, users [alice]) logs only users its condition excludes"
	if r.Status != Blind || r.Reason != want {
		t.Errorf("%s: %q, want blind: %q", r.Status, r.Reason, want)
	}
	if !strings.Contains(r.Reason, "users [alice]") {
		t.Errorf("reason %q does not name the rule logging alice", r.Reason)
	}
}
