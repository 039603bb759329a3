// Package apiserver holds what kube-apiserver is given to feed vigil: the
// audit policy and the webhook kubeconfig. Its test loads the policy with
// kube-apiserver's own policy code.
package apiserver

import (
	"slices"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestPolicyLogsWhatTheDefaultRulesNeedAndNoSecretBodies(t *testing.T) {
	p, err := policy.LoadPolicyFromFile("policy.yaml")
	if err != nil {
		t.Fatalf("kube-apiserver rejects the policy: %v", err)
	}
	eval := policy.NewPolicyRuleEvaluator(p)
	admin := &user.DefaultInfo{Name: "alice", Groups: []string{"system:authenticated"}}
	node := &user.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	anonymous := &user.DefaultInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
	res := func(u user.Info, verb, group, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, APIVersion: "v1", Resource: resource, Subresource: sub, Namespace: "default", Name: "x", ResourceRequest: true}
	}
	path := func(u user.Info, p string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "get", Path: p}
	}
	for _, tc := range []struct {
		what  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		// Bodies the rules inspect.
		{"privileged pod", res(admin, "create", "", "pods", ""), auditinternal.LevelRequest},
		{"ephemeral container", res(admin, "patch", "", "pods", "ephemeralcontainers"), auditinternal.LevelRequest},
		{"daemonset", res(admin, "create", "apps", "daemonsets", ""), auditinternal.LevelRequest},
		{"deployment update", res(admin, "update", "apps", "deployments", ""), auditinternal.LevelRequest},
		{"cronjob", res(admin, "create", "batch", "cronjobs", ""), auditinternal.LevelRequest},
		{"NodePort service", res(admin, "create", "", "services", ""), auditinternal.LevelRequest},
		{"ingress without TLS", res(admin, "create", "networking.k8s.io", "ingresses", ""), auditinternal.LevelRequest},
		{"cluster-admin binding", res(admin, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), auditinternal.LevelRequest},
		{"wildcard role", res(admin, "patch", "rbac.authorization.k8s.io", "roles", ""), auditinternal.LevelRequest},
		{"configmap with credentials", res(admin, "create", "", "configmaps", ""), auditinternal.LevelRequest},
		// Credentials: never their content.
		{"secret create", res(admin, "create", "", "secrets", ""), auditinternal.LevelMetadata},
		{"secret read", res(admin, "get", "", "secrets", ""), auditinternal.LevelMetadata},
		{"secret read by a node", res(node, "get", "", "secrets", ""), auditinternal.LevelMetadata},
		{"token request", res(admin, "create", "", "serviceaccounts", "token"), auditinternal.LevelMetadata},
		{"token review", res(admin, "create", "authentication.k8s.io", "tokenreviews", ""), auditinternal.LevelMetadata},
		// Who did what, for the rest of the rules.
		{"exec", res(admin, "create", "", "pods", "exec"), auditinternal.LevelMetadata},
		{"node proxy", res(admin, "get", "", "nodes", "proxy"), auditinternal.LevelMetadata},
		{"pod list", res(admin, "list", "", "pods", ""), auditinternal.LevelMetadata},
		{"namespace delete", res(admin, "delete", "", "namespaces", ""), auditinternal.LevelMetadata},
		{"webhook configuration", res(admin, "create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""), auditinternal.LevelMetadata},
		{"CSR approval", res(admin, "update", "certificates.k8s.io", "certificatesigningrequests", "approval"), auditinternal.LevelMetadata},
		{"anonymous discovery", path(anonymous, "/api"), auditinternal.LevelMetadata},
		// Noise.
		{"health check", path(anonymous, "/readyz"), auditinternal.LevelNone},
		{"node lease renewal", res(node, "update", "coordination.k8s.io", "leases", ""), auditinternal.LevelNone},
		{"events", res(admin, "create", "", "events", ""), auditinternal.LevelNone},
	} {
		got := eval.EvaluatePolicyRule(tc.attrs)
		if got.Level != tc.want {
			t.Errorf("%s: level %s, want %s", tc.what, got.Level, tc.want)
		}
		if tc.want != auditinternal.LevelNone && !slices.Contains(got.OmitStages, auditinternal.StageRequestReceived) {
			t.Errorf("%s: RequestReceived is logged; no default rule uses it and it doubles the volume", tc.what)
		}
	}
}
