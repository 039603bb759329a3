package engine

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// realClusterLog is a trimmed audit log of a real kube-apiserver and
// kube-controller-manager v1.34 (see its README).
const realClusterLog = "../rules/default/testdata/cluster-v1.34.jsonl.gz"

// gunzipped writes a gzipped log out plain, for Replay.
func gunzipped(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(name), ".gz"))
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDefaultPackOnARealCluster(t *testing.T) {
	got := map[string]int{}
	for _, a := range replayAlerts(t, defaultSet(t), []string{gunzipped(t, realClusterLog)}) {
		got[a.Rule+" "+alertObject(a)]++
	}
	var lines []string
	for k, n := range got {
		lines = append(lines, fmt.Sprintf("%d %s", n, k))
	}
	slices.SortFunc(lines, func(a, b string) int {
		_, a, _ = strings.Cut(a, " ")
		_, b, _ = strings.Cut(b, " ")
		return strings.Compare(a, b)
	})
	want := strings.Split(strings.TrimSpace(realClusterAlerts), "\n")
	for i := range want {
		want[i] = strings.TrimSpace(want[i])
	}
	if !slices.Equal(lines, want) {
		t.Errorf("alerts (count rule user verb resource object):\n%s", lineDiff(want, lines))
	}
}

// realClusterAlerts is what the default pack raises on
// realClusterLog: how many alerts, rule, user,
// verb, resource, namespace/name.
const realClusterAlerts = `
	1 cluster-admin-binding kubernetes-admin create clusterrolebindings bob-cluster-admin
	1 cronjob-created kubernetes-admin create cronjobs default/backup
	1 daemonset-created kubernetes-admin create daemonsets default/node-agent
	1 daemonset-created kubernetes-admin create daemonsets team-b/node-agent
	1 dangerous-capabilities kubernetes-admin create deployments default/cni-agent
	1 dangerous-capabilities kubernetes-admin create deployments team-b/cni-agent
	1 dangerous-capabilities kubernetes-admin create pods default/priv
	1 deployment-created kubernetes-admin create deployments default/cni-agent
	1 deployment-created kubernetes-admin create deployments default/web
	1 deployment-created kubernetes-admin create deployments team-b/cni-agent
	1 deployment-deleted-in-default kubernetes-admin delete deployments default/web
	1 forbidden-burst eve list secrets kube-system/
	1 forbidden-burst mallory list deployments kube-system/
	1 host-namespace-pod kubernetes-admin create daemonsets default/node-agent
	1 host-namespace-pod kubernetes-admin create daemonsets team-b/node-agent
	1 host-namespace-pod kubernetes-admin create deployments default/cni-agent
	1 host-namespace-pod kubernetes-admin create deployments team-b/cni-agent
	1 host-namespace-pod kubernetes-admin create pods default/priv
	1 impersonation-used kubernetes-admin get secrets default/db-credentials
	1 impersonation-used kubernetes-admin list pods default/
	1 namespace-created kubernetes-admin create namespaces team-a
	1 namespace-created kubernetes-admin create namespaces team-b
	1 namespace-deleted kubernetes-admin delete namespaces team-a/team-a
	1 node-created-by-non-node kubernetes-admin create nodes fake-node
	1 node-created-by-non-node kubernetes-admin create nodes node-1
	1 node-created-by-non-node kubernetes-admin create nodes node-2
	1 pod-exec-or-attach kubernetes-admin get pods/exec default/bound
	1 privileged-container kubernetes-admin create daemonsets default/node-agent
	1 privileged-container kubernetes-admin create daemonsets team-b/node-agent
	1 privileged-container kubernetes-admin create deployments default/cni-agent
	1 privileged-container kubernetes-admin create deployments team-b/cni-agent
	1 privileged-container kubernetes-admin create jobs default/migrate
	1 privileged-container kubernetes-admin create pods default/priv
	1 privileged-container kubernetes-admin create statefulsets default/store
	1 role-created kubernetes-admin create roles default/secret-reader
	1 rolebinding-created kubernetes-admin create clusterrolebindings bob-cluster-admin
	1 rolebinding-created kubernetes-admin create rolebindings default/app-secret-reader
	1 secret-access-forbidden eve get secrets default/db-credentials
	1 secret-access-forbidden kubernetes-admin get secrets default/db-credentials
	1 secret-access-forbidden mallory list secrets default/
	1 secret-access-forbidden system:serviceaccount:default:app list secrets -
	1 secret-created kubernetes-admin create secrets default/db-credentials
	1 secret-created kubernetes-admin create secrets default/s1
	1 secret-created kubernetes-admin create secrets default/s10
	1 secret-created kubernetes-admin create secrets default/s11
	1 secret-created kubernetes-admin create secrets default/s12
	1 secret-created kubernetes-admin create secrets default/s2
	1 secret-created kubernetes-admin create secrets default/s3
	1 secret-created kubernetes-admin create secrets default/s4
	1 secret-created kubernetes-admin create secrets default/s5
	1 secret-created kubernetes-admin create secrets default/s6
	1 secret-created kubernetes-admin create secrets default/s7
	1 secret-created kubernetes-admin create secrets default/s8
	1 secret-created kubernetes-admin create secrets default/s9
	1 secret-enumeration system:serviceaccount:default:app get secrets default/s9
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/db-credentials
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s1
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s10
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s11
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s12
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s2
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s3
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s4
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s5
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s6
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s7
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s8
	1 secret-read-by-non-node system:serviceaccount:default:app get secrets default/s9
	1 secret-read-by-non-node system:serviceaccount:default:app list secrets default/
	1 sensitive-hostpath-mount kubernetes-admin create cronjobs default/backup
	1 sensitive-hostpath-mount kubernetes-admin create deployments default/cni-agent
	1 sensitive-hostpath-mount kubernetes-admin create deployments team-b/cni-agent
	1 sensitive-hostpath-mount kubernetes-admin create pods default/priv
	1 serviceaccount-created kubernetes-admin create serviceaccounts default/app
	1 serviceaccount-token-requested kubernetes-admin create serviceaccounts/token default/app
`

// lineDiff shows the lines only in want (-) and only in got (+).
func lineDiff(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("- " + w + "\n")
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("+ " + g + "\n")
		}
	}
	return b.String()
}

// alertObject names who did what to which object.
func alertObject(a *alert.Alert) string {
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	obj := a.Name
	if a.Namespace != "" {
		obj = a.Namespace + "/" + a.Name
	}
	if obj == "" {
		obj = "-" // a list or watch across namespaces
	}
	return fmt.Sprintf("%s %s %s %s", a.User, a.Verb, resource, obj)
}
