package rules

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// pantherRules maps Panther's Kubernetes rules to the default pack's
// equivalents.
var pantherRules = map[string]string{
	"Kubernetes.API.AnonymousAccess":           "anonymous-request-allowed",
	"Amazon.EKS.AnonymousAPIAccess":            "anonymous-request-allowed",
	"Kubernetes.Pod.Exec":                      "pod-exec-or-attach",
	"Kubernetes.Pod.Host.IPC":                  "host-namespace-pod",
	"Kubernetes.Pod.Host.Network":              "host-namespace-pod",
	"Kubernetes.Pod.Host.PID":                  "host-namespace-pod",
	"Kubernetes.Pod.HostPath.Volume":           "sensitive-hostpath-mount",
	"Kubernetes.Pod.Privileged.Created":        "privileged-container",
	"Kubernetes.Pod.Dangerous.Capabilities":    "dangerous-capabilities",
	"Kubernetes.Role.Wildcard":                 "role-with-wildcard",
	"Kubernetes.Role.PodExec":                  "role-with-pod-exec",
	"Kubernetes.Role.NodeProxyPermissions":     "role-with-nodes-proxy",
	"Kubernetes.Role.WritePermissions":         "role-with-write-privileges",
	"Kubernetes.ClusterRoleBinding.Privileged": "cluster-admin-binding",
	"Kubernetes.Secret.AccessDenied":           "secret-access-forbidden",
	"Kubernetes.Secrets.DumpAllNamespaces":     "secrets-listed-cluster-wide",
	"Kubernetes.Service.NodePort.Deployed":     "nodeport-service-created",
	"Kubernetes.Ingress.NoTLS":                 "ingress-without-tls",
	"Kubernetes.SystemRole.Modified":           "system-role-modified",
	"Kubernetes.ServiceAccount.TokenCreated":   "serviceaccount-token-requested",
	"Kubernetes.AdmissionController.Created":   "webhook-configuration-changed",
	"Kubernetes.DaemonSet.Created":             "daemonset-created",
	"Kubernetes.CronJob.CreatedOrModified":     "cronjob-created",
	"Kubernetes.Pod.SystemNamespace":           "pod-created-in-kube-namespace",
}

// pantherDivergences are Panther test cases where the default pack
// deliberately decides otherwise, with the reason.
var pantherDivergences = map[string]string{
	"Webhook Update (Not Create)":                       "changing a webhook configuration is as dangerous as creating one",
	"EKS ClusterRoleBinding to controller-manager role": "privileged-role-binding covers system: roles; cluster-admin-binding is cluster-admin only",
	"RoleBinding (not ClusterRoleBinding)":              "a RoleBinding to cluster-admin still grants everything in its namespace",
	"System principal creating binding (excluded)":      "a cluster-admin grant is worth an alert whoever makes it",
	"System namespace (excluded)":                       "an ingress without TLS is plain HTTP in any namespace",
	"System Namespace with HostIPC (Excluded)":          "host namespaces are flagged in every namespace; exceptions are site policy",
	"Privileged Pod in System Namespace (Excluded)":     "privileged pods are flagged in every namespace; exceptions are site policy",
	"Run-As-Root Pod Created":                           "running as root is not privileged; the pack has no run-as-root rule",
	"Pod with runAsUser=0 (root)":                       "running as root is not privileged; the pack has no run-as-root rule",
	"EKS Role with nodes wildcard":                      "resources * is role-with-wildcard's finding",
	"Updating existing role (not creating)":             "role rules fire on update and patch too: granting by edit is granting",
	"EKS failed secret get (404 Not Found)":             "secret-access-forbidden is about denials (403); a 404 is not one",
	"System service account failed get (excluded)":      "a denied secret read is worth seeing whoever is denied",
	"List secrets operation (not get)":                  "denied lists of secrets are probing too",
	"System principal in user namespace (alert)":        "the control plane minting tokens is the cluster working",
	"System:coredns modified (excluded - expected)":     "system: roles are the control plane's; a person changing any of them is flagged",
	"Deployment creating pod (not direct pod creation)": "the pack flags the workload a person creates in a system namespace, not the Pods its controller derives",
}

// TestPantherCasesAgreeWithTheDefaultPack replays Panther's labelled test
// events for its Kubernetes rules through the default pack's equivalent
// rules, so the pack's logic is checked against a second, independent set
// of positives and negatives.
func TestPantherCasesAgreeWithTheDefaultPack(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../shared/corpus/panther-analysis/panther_k8s_rule_tests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	var checked, diverged int
	for sc.Scan() {
		var w struct {
			RuleID   string          `json:"rule_id"`
			Test     string          `json:"test_name"`
			Expected bool            `json:"expected_alert"`
			Log      json.RawMessage `json:"log"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatal(err)
		}
		id, ok := pantherRules[w.RuleID]
		if !ok {
			continue
		}
		// Only audit Events; the AKS and GKE wrappers are other formats.
		var probe struct {
			Verb string `json:"verb"`
		}
		if json.Unmarshal(w.Log, &probe) != nil || probe.Verb == "" {
			continue
		}
		ev, err := parse.TestEvent(w.Log, "panther")
		if err != nil {
			continue // e.g. EKS exports with space-separated timestamps
		}
		r, ok := set.Rule(id)
		if !ok {
			t.Fatalf("no rule %s", id)
		}
		got, _, errs := set.TryRule(r, []*audit.Event{ev})
		if len(errs) > 0 {
			t.Errorf("%s on %s %q: evaluation errors %v", id, w.RuleID, w.Test, errs)
		}
		checked++
		if got == w.Expected {
			continue
		}
		if _, ok := pantherDivergences[w.Test]; ok {
			diverged++
			continue
		}
		t.Errorf("%s on %s %q: fired=%v, Panther expects %v\n  %s", id, w.RuleID, w.Test, got, w.Expected, w.Log)
	}
	if checked < 100 || diverged*4 > checked {
		t.Errorf("checked %d cases with %d known divergences; want at least 100, under a quarter diverging", checked, diverged)
	}
}
