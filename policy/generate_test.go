package policy

import (
	"slices"
	"strings"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/rules"
)

// generated generates the policy for a rule set, checks it with Check and
// returns kube-apiserver's evaluator of it.
func generated(t *testing.T, set *rules.Set) (string, func(authorizer.Attributes) audit.RequestAuditConfig) {
	t.Helper()
	out, err := Generate(set)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(out)
	if err != nil {
		t.Fatalf("generated policy does not load: %v\n%s", err, out)
	}
	for _, r := range Check(p, set) {
		if r.Status != OK {
			t.Errorf("%s: %s under the generated policy: %s", r.Rule, r.Status, r.Reason)
		}
	}
	ip, err := auditpolicy.LoadPolicyFromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), auditpolicy.NewPolicyRuleEvaluator(ip).EvaluatePolicyRule
}

func users() (alice, node, proxy user.Info) {
	return &user.DefaultInfo{Name: "alice", Groups: []string{"system:authenticated"}},
		&user.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}},
		&user.DefaultInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}
}

func res(u user.Info, verb, group, resource, sub string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, APIVersion: "v1",
		Resource: resource, Subresource: sub, Namespace: "default", Name: "x", ResourceRequest: true}
}

func path(u user.Info, p string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: u, Verb: "get", Path: p}
}

type levelCase struct {
	what  string
	attrs authorizer.AttributesRecord
	want  auditinternal.Level
}

func expectLevels(t *testing.T, policy string, eval func(authorizer.Attributes) audit.RequestAuditConfig, cases []levelCase) {
	t.Helper()
	for _, c := range cases {
		got := eval(c.attrs)
		if got.Level != c.want {
			t.Errorf("%s: level %s, want %s", c.what, got.Level, c.want)
		}
		if got.Level != auditinternal.LevelNone && !slices.Contains(got.OmitStages, auditinternal.StageRequestReceived) {
			t.Errorf("%s: RequestReceived is logged, and no rule needs it", c.what)
		}
	}
	if t.Failed() {
		t.Logf("generated policy:\n%s", policy)
	}
}

func TestGeneratedPolicyForTheDefaultPack(t *testing.T) {
	policy, eval := generated(t, defaultPack(t))
	alice, node, proxy := users()
	M, R, N := auditinternal.LevelMetadata, auditinternal.LevelRequest, auditinternal.LevelNone
	expectLevels(t, policy, eval, []levelCase{
		{"privileged pod", res(alice, "create", "", "pods", ""), R},
		{"debug container", res(alice, "patch", "", "pods", "ephemeralcontainers"), R},
		{"deployment update", res(alice, "update", "apps", "deployments", ""), R},
		{"cronjob", res(alice, "create", "batch", "cronjobs", ""), R},
		{"ingress", res(alice, "create", "networking.k8s.io", "ingresses", ""), R},
		{"binding", res(alice, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), R},
		{"configmap write", res(alice, "update", "", "configmaps", ""), R},
		// Only what the rules read is logged with its body.
		{"configmap read", res(alice, "get", "", "configmaps", ""), M},
		{"secret read", res(alice, "get", "", "secrets", ""), M},
		{"secret create", res(alice, "create", "", "secrets", ""), M},
		{"token request", res(alice, "create", "", "serviceaccounts", "token"), M},
		{"token review", res(alice, "create", "authentication.k8s.io", "tokenreviews", ""), M},
		{"pod list", res(alice, "list", "", "pods", ""), M},
		{"exec", res(alice, "create", "", "pods", "exec"), M},
		{"anonymous discovery", path(&user.DefaultInfo{Name: "system:anonymous"}, "/api"), M},
		// Noise.
		{"health check", path(alice, "/readyz"), N},
		{"metrics scrape", path(alice, "/metrics"), N},
		{"events", res(alice, "create", "", "events", ""), N},
		{"kube-proxy watch", res(proxy, "watch", "", "endpoints", ""), N},
		{"kubelet reading its node", res(node, "get", "", "nodes", ""), N},
	})
}

func TestGeneratedPolicyForACustomRuleSet(t *testing.T) {
	set, err := rules.Load(rules.LoadOptions{Paths: []string{"testdata/custom"}})
	if err != nil {
		t.Fatal(err)
	}
	policy, eval := generated(t, set)
	alice, _, _ := users()
	expectLevels(t, policy, eval, []levelCase{
		{"widget update", res(alice, "update", "example.com", "widgets", ""), auditinternal.LevelRequestResponse},
		{"widget read", res(alice, "get", "example.com", "widgets", ""), auditinternal.LevelNone},
		{"secret read", res(alice, "get", "", "secrets", ""), auditinternal.LevelMetadata},
		{"gadget of any group deleted", res(alice, "delete", "toys.example", "gadgets", ""), auditinternal.LevelMetadata},
		// A rule watches events, so they are not dropped as noise.
		{"event created", res(alice, "create", "", "events", ""), auditinternal.LevelMetadata},
		// No rule matches any request: nothing else is logged.
		{"pod created", res(alice, "create", "", "pods", ""), auditinternal.LevelNone},
		{"discovery", path(alice, "/api"), auditinternal.LevelNone},
	})
	if !strings.Contains(policy, "users: [\"system:kube-proxy\"]") {
		t.Errorf("the noise drops that hide nothing were left out too:\n%s", policy)
	}
}

func TestGeneratedPolicyKeepsCredentialsAtMetadataUnderABodyCatchAll(t *testing.T) {
	set, err := rules.Load(rules.LoadOptions{Paths: []string{"testdata/bodies-everywhere"}})
	if err != nil {
		t.Fatal(err)
	}
	policy, eval := generated(t, set)
	alice, _, _ := users()
	M, R := auditinternal.LevelMetadata, auditinternal.LevelRequest
	expectLevels(t, policy, eval, []levelCase{
		{"pod created", res(alice, "create", "", "pods", ""), R},
		{"discovery", path(alice, "/api"), R},
		{"secret created", res(alice, "create", "", "secrets", ""), M},
		{"token request", res(alice, "create", "", "serviceaccounts", "token"), M},
		{"token review", res(alice, "create", "authentication.k8s.io", "tokenreviews", ""), M},
		{"configmap created", res(alice, "create", "", "configmaps", ""), M},
	})
}
