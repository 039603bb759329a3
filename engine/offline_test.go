package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/alert"
)

const corpus = "../../shared/corpus/"

func replayRules(t *testing.T, files ...string) ([]*alert.Alert, ReplayStats, []string) {
	t.Helper()
	var alerts []*alert.Alert
	var malformed []string
	st, err := Replay(context.Background(), defaultSet(t), files, ReplayOptions{
		OnAlert: func(a *alert.Alert) error { alerts = append(alerts, a); return nil },
		OnMalformed: func(file string, line int, err error) {
			malformed = append(malformed, filepath.Base(file)+":"+strconv.Itoa(line))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return alerts, st, malformed
}

func ruleIDs(as []*alert.Alert) []string {
	var out []string
	for _, a := range as {
		if !slices.Contains(out, a.Rule) {
			out = append(out, a.Rule)
		}
	}
	slices.Sort(out)
	return out
}

// The benign real cluster log must stay quiet: a busy control plane,
// kubelets and an admin running kubectl get are not incidents.
func TestReplayBenignClusterRaisesNothing(t *testing.T) {
	alerts, st, malformed := replayRules(t, corpus+"immudb-log-audit/k8s.log")
	if st.Events != 2971 || len(malformed) != 0 {
		t.Fatalf("read %d events with malformed lines %v; want all 2971 events", st.Events, malformed)
	}
	for _, a := range alerts {
		t.Errorf("benign log raised %s (%s): %s", a.Rule, a.Severity, a.Output)
	}
	if len(st.RuleErrors) != 0 {
		t.Errorf("rules failed on benign events: %v", st.RuleErrors)
	}
}

// Each Falco capture must raise the equivalent of the Falco rules its test
// suite expects, and nothing more; see the label table in SOURCES.md.
func TestReplayFalcoCapturesRaiseTheExpectedRules(t *testing.T) {
	cases := map[string][]string{
		"anonymous_creates_namespace_foo.json":        {"anonymous-request-allowed", "namespace-created"},
		"attach_cluster_admin_role.json":              {"cluster-admin-binding", "rolebinding-created"},
		"attach_pod.json":                             {"pod-exec-or-attach"},
		"create_cluster_role_pod_exec.json":           {"role-created", "role-with-pod-exec"},
		"create_cluster_role_wildcard_resources.json": {"role-created", "role-with-wildcard"},
		"create_cluster_role_wildcard_verbs.json":     {"role-created", "role-with-wildcard", "role-with-write-privileges"},
		"create_cluster_role_write_privileges.json":   {"role-created", "role-with-write-privileges"},
		"create_clusterrole.json":                     {"role-created"},
		"create_clusterrolebinding.json":              {"rolebinding-created"},
		"create_configmap.json":                       {"configmap-created"},
		// Falco: no "Create/Modify Configmap With Private Credentials".
		"create_configmap_no_sensitive_values.json": {"configmap-created"},
		"create_configmap_sensitive_values.json":    {"configmap-created", "configmap-with-credentials"},
		"create_deployment.json":                    {"deployment-created"},
		// Falco: bootstrap token secrets in kube-system are not activity.
		"create_kube_system_secret.json": nil,
		// These captures hold only the Pod that replicaset-controller made
		// from a Deployment the capture does not hold. Falco alerts on the
		// Pod; the pack alerts on the Deployment (or on a Pod a person
		// creates), not again on what a controller derives from it.
		"create_nginx_pod_hostnetwork.json":                                      nil,
		"create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json": nil,
		"create_nginx_pod_nohostnetwork.json":                                    nil,
		"create_nginx_pod_privileged.json":                                       nil,
		"create_nginx_pod_privileged_2nd_container.json":                         nil,
		"create_nginx_pod_sensitive_mount.json":                                  nil,
		"create_nginx_pod_sensitive_mount_2nd_container.json":                    nil,
		"create_pod_kube_public_namespace.json":                                  nil,
		"create_pod_kube_system_namespace.json":                                  nil,
		// Falco fires only with an image allowlist (allow_only_apache_container).
		"create_nginx_pod_unprivileged.json":               nil,
		"create_nginx_pod_unsensitive_mount.json":          nil,
		"create_nginx_service_nodeport.json":               {"nodeport-service-created", "service-created"},
		"create_nginx_service_nonodeport.json":             {"service-created"},
		"create_secret.json":                               {"secret-created"},
		"create_service.json":                              {"service-created"},
		"create_service_account_token_secret.json":         nil,
		"create_serviceaccount.json":                       {"serviceaccount-created"},
		"create_serviceaccount_kube_public_namespace.json": {"serviceaccount-created", "serviceaccount-created-in-kube-namespace"},
		"create_serviceaccount_kube_system_namespace.json": {"serviceaccount-created", "serviceaccount-created-in-kube-namespace"},
		"delete_cluster_role_kube_aggregator.json":         {"role-deleted", "system-role-modified"},
		"delete_clusterrole.json":                          {"role-deleted"},
		"delete_clusterrolebinding.json":                   {"rolebinding-deleted"},
		"delete_configmap.json":                            {"configmap-deleted"},
		"delete_deployment.json":                           {"deployment-deleted-in-default"},
		"delete_namespace_foo.json":                        {"namespace-deleted"},
		"delete_secret.json":                               {"secret-deleted"},
		"delete_service.json":                              {"service-deleted"},
		"delete_serviceaccount.json":                       {"serviceaccount-deleted"},
		"exec_pod.json":                                    {"pod-exec-or-attach"},
		"fal_01_003.json":                                  nil,
		// Falco's namespace allowlist rules need site lists; the stock
		// "K8s Namespace Created" fires.
		"minikube_creates_namespace_foo.json":            {"namespace-created"},
		"modify_cluster_role_node_problem_detector.json": {"role-with-write-privileges", "system-role-modified"},
		"some-user_creates_namespace_foo.json":           {"namespace-created"},
	}
	files, err := filepath.Glob(corpus + "falco-trace-files/*.json")
	if err != nil || len(files) != len(cases) {
		t.Fatalf("found %d capture files (%v), the table has %d", len(files), err, len(cases))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			want, ok := cases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			alerts, _, _ := replayRules(t, f)
			if got := ruleIDs(alerts); !slices.Equal(got, want) {
				t.Errorf("rules raised %v, want %v", got, want)
			}
		})
	}
}

// The captures of Pods that replicaset-controller made raise nothing of
// their own (above); the same Pods created by a person raise what Falco
// expects of them.
func TestReplayFalcoPodCapturesAsAPersonRaiseTheExpectedRules(t *testing.T) {
	cases := map[string][]string{
		"create_nginx_pod_hostnetwork.json":                                      {"host-namespace-pod"},
		"create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json": {"privileged-container"},
		"create_nginx_pod_privileged.json":                                       {"privileged-container"},
		"create_nginx_pod_privileged_2nd_container.json":                         {"privileged-container"},
		"create_nginx_pod_sensitive_mount.json":                                  {"sensitive-hostpath-mount"},
		"create_nginx_pod_sensitive_mount_2nd_container.json":                    {"sensitive-hostpath-mount"},
		"create_pod_kube_public_namespace.json":                                  {"pod-created-in-kube-namespace"},
		"create_pod_kube_system_namespace.json":                                  {"pod-created-in-kube-namespace"},
		"create_nginx_pod_unprivileged.json":                                     nil,
	}
	for name, want := range cases {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			data, err := os.ReadFile(corpus + "falco-trace-files/" + name)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			for line := range bytes.Lines(data) {
				var ev map[string]any
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatal(err)
				}
				ev["user"] = map[string]any{"username": "alice", "groups": []string{"system:authenticated"}}
				b, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				out.Write(append(b, '\n'))
			}
			f := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(f, out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			alerts, _, _ := replayRules(t, f)
			if got := ruleIDs(alerts); !slices.Equal(got, want) {
				t.Errorf("rules raised %v, want %v", got, want)
			}
		})
	}
}

func TestReplaySkipsMalformedLinesAndReportsThem(t *testing.T) {
	_, st, malformed := replayRules(t, corpus+"falco-trace-files/fal_01_003.json", corpus+"falco-trace-files/create_secret.json")
	if !slices.Equal(malformed, []string{"fal_01_003.json:1"}) {
		t.Errorf("malformed lines reported: %v, want fal_01_003.json:1", malformed)
	}
	if st.Events != 1 || st.Malformed != 1 {
		t.Errorf("events %d malformed %d, want 1 and 1 (blank lines are not malformed)", st.Events, st.Malformed)
	}
}

func TestReplayReadsStdinAndEventLists(t *testing.T) {
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` +
		`{"auditID":"a1","stage":"ResponseComplete","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","subresource":"exec","namespace":"default","name":"p"},"responseStatus":{"code":101}},` +
		`{"auditID":"a2","stage":"ResponseComplete","verb":"get","user":{"username":"system:node:n1","groups":["system:nodes"]},"objectRef":{"resource":"secrets","namespace":"default","name":"s"},"responseStatus":{"code":200}}]}
not json
{"auditID":"a3","stage":"ResponseComplete","verb":"delete","user":{"username":"bob"},"objectRef":{"resource":"deployments","namespace":"default","name":"web"},"responseStatus":{"code":200}}
`
	var got []string
	var malformed []string
	st, err := Replay(context.Background(), defaultSet(t), []string{"-"}, ReplayOptions{
		Stdin:       strings.NewReader(body),
		OnAlert:     func(a *alert.Alert) error { got = append(got, a.ID); return nil },
		OnMalformed: func(file string, line int, err error) { malformed = append(malformed, file+":"+strconv.Itoa(line)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pod-exec-or-attach/a1", "deployment-deleted-in-default/a3"}
	if !slices.Equal(got, want) || !slices.Equal(malformed, []string{"-:2"}) || st.Events != 3 {
		t.Errorf("alerts %v malformed %v events %d; want %v, [-:2], 3", got, malformed, st.Events, want)
	}
}
