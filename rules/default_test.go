package rules

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
)

func TestDefaultPackTestsPass(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatalf("loading the default pack: %v", err)
	}
	results, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 {
		t.Fatal("the default pack has no tests")
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s:%d: %s: %q: %s", r.Case.File, r.Case.Line, r.Case.Rule, r.Case.Name, r.Why)
		}
	}
}

func TestRuleGuideListsEveryDefaultRule(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range set.Rules() {
		row := "| `" + r.ID + "` | " + r.Severity + " |"
		if !strings.Contains(string(guide), row) {
			t.Errorf("docs/rules.md has no row %q", row)
		}
	}
}

// TestDefaultPackOnARealCluster replays the trimmed audit log of a
// kube-apiserver v1.34 with kube-controller-manager (default/testdata/README.md
// says how it was made) and checks every alert the pack gives, by rule and
// object: the cluster's own bootstrap and controllers raise nothing, and each
// scenario of the run raises what it should.
func TestDefaultPackOnARealCluster(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	got := replayForTest(t, set, "default/testdata/cluster-v1.34.jsonl.gz")
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
// default/testdata/cluster-v1.34.jsonl.gz: how many alerts, rule, user,
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
	12 secret-access-forbidden eve get secrets default/db-credentials
	1 secret-access-forbidden eve get secrets team-a/s1
	1 secret-access-forbidden eve get secrets team-a/s10
	1 secret-access-forbidden eve get secrets team-a/s11
	1 secret-access-forbidden eve get secrets team-a/s12
	1 secret-access-forbidden eve get secrets team-a/s2
	1 secret-access-forbidden eve get secrets team-a/s3
	1 secret-access-forbidden eve get secrets team-a/s4
	1 secret-access-forbidden eve get secrets team-a/s5
	1 secret-access-forbidden eve get secrets team-a/s6
	1 secret-access-forbidden eve get secrets team-a/s7
	1 secret-access-forbidden eve get secrets team-a/s8
	1 secret-access-forbidden eve get secrets team-a/s9
	12 secret-access-forbidden eve list secrets kube-system/
	1 secret-access-forbidden kubernetes-admin get secrets default/db-credentials
	10 secret-access-forbidden mallory list secrets default/
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

// replayForTest evaluates set over a gzipped audit log as replay does, with
// thresholds in memory, and counts the alerts by "rule user verb resource
// namespace/name" (a generated name ends in *). A request's later stages give
// its alert once; a threshold alert is counted once per firing.
func replayForTest(t *testing.T, set *Set, name string) map[string]int {
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
	states := map[string]*WindowState{}
	seen := map[string]bool{}
	got := map[string]int{}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 4<<20)
	for n := 1; sc.Scan(); n++ {
		ev, err := audit.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("%s:%d: %v", name, n, err)
		}
		matches, err := set.Eval(context.Background(), ev)
		if err != nil {
			t.Fatalf("%s:%d: %v", name, n, err)
		}
		for _, m := range matches {
			id := m.Rule.ID + "/" + ev.AuditID
			if th := m.Rule.Threshold; th != nil {
				key := ThresholdKey(m.Rule.ID, m.GroupKey)
				if states[key] == nil {
					states[key] = &WindowState{}
				}
				fired, _ := states[key].Observe(th, ev.AuditID, m.Distinct, ev.Time())
				if fired == nil {
					continue
				}
				id = ThresholdAlertID(m.Rule.ID, m.GroupKey, th, fired)
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			got[m.Rule.ID+" "+alertObject(t, ev)]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// alertObject names who did what to which object.
func alertObject(t *testing.T, ev *audit.Event) string {
	t.Helper()
	var ref audit.ObjectReference
	if ev.ObjectRef != nil {
		ref = *ev.ObjectRef
	}
	name := ref.Name
	if name == "" && len(ev.RequestObject) > 0 {
		var o struct {
			Metadata struct {
				GenerateName string `json:"generateName"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(ev.RequestObject, &o); err != nil {
			t.Fatalf("request object of %s: %v", ev.AuditID, err)
		}
		if o.Metadata.GenerateName != "" {
			name = o.Metadata.GenerateName + "*"
		}
	}
	resource := ref.Resource
	if ref.Subresource != "" {
		resource += "/" + ref.Subresource
	}
	obj := name
	if ref.Namespace != "" {
		obj = ref.Namespace + "/" + name
	}
	if obj == "" {
		obj = "-" // a list or watch across namespaces
	}
	return ev.User.Username + " " + ev.Verb + " " + resource + " " + obj
}
