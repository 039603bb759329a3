package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loadDefault compiles the default pack once for all tests: a Set is
// immutable, so sharing it is safe, and compiling it under -race is slow.
var loadDefault = sync.OnceValues(func() (*rules.Set, error) {
	return rules.Load(rules.LoadOptions{Default: true})
})

func defaultSet(t testing.TB) *rules.Set {
	t.Helper()
	set, err := loadDefault()
	if err != nil {
		t.Fatalf("loading the default pack: %v", err)
	}
	return set
}

// ruleSet loads rule files written for one test.
func ruleSet(t testing.TB, yamlText string) *rules.Set {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(rules.LoadOptions{Paths: []string{path}})
	if err != nil {
		t.Fatalf("loading rules: %v", err)
	}
	return set
}

func decode(t testing.TB, js string) *audit.Event {
	t.Helper()
	ev, err := audit.Decode([]byte(js))
	if err != nil {
		t.Fatalf("decoding %s: %v", js, err)
	}
	return ev
}

func ids(as []*alert.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

const secretRead = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"3f9e34f0-52e8-44bc-88fb-10ae742d2a0a",
"stage":"%s","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get",
"user":{"username":"system:serviceaccount:default:app","groups":["system:serviceaccounts","system:authenticated"]},
"sourceIPs":["10.0.0.7"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},
"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-02-19T01:13:32.195666Z","stageTimestamp":"2024-02-19T01:13:32.199000Z",
"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"app-reader/default\" of Role \"secret-reader\" to ServiceAccount \"app/default\""}}`

func TestEvaluateSecretReadGivesTheDocumentedAlert(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	e := decode(t, fmt.Sprintf(secretRead, "ResponseComplete"))
	e.Cluster = "prod-eu-1"
	got, err := ev.Evaluate(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got alerts %v, want exactly secret-read-by-non-node", ids(got))
	}
	a := got[0]
	want := &alert.Alert{
		ID: "secret-read-by-non-node/3f9e34f0-52e8-44bc-88fb-10ae742d2a0a", Rule: "secret-read-by-non-node",
		Title: "Secret read by a non-node identity", Severity: "high", Tags: []string{"credential-access", "T1552.007"},
		Output: "system:serviceaccount:default:app get secrets default/db", Cluster: "prod-eu-1",
		AuditID: "3f9e34f0-52e8-44bc-88fb-10ae742d2a0a", Stage: "ResponseComplete",
		Time: time.Date(2024, 2, 19, 1, 13, 32, 195666000, time.UTC), User: "system:serviceaccount:default:app",
		Verb: "get", Resource: "secrets", Namespace: "default", Name: "db", SourceIPs: []string{"10.0.0.7"},
		UserAgent: "curl/8.5.0", ResponseCode: 200, Count: 1,
		Description: "Anything but a kubelet or the control plane reading Secrets may be credential theft. Operators that " +
			"legitimately read Secrets (ingress controllers, cert-manager, Helm) are worth listing in an exception.",
		RunbookURL:            "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets-secretsyaml",
		UserGroups:            []string{"system:serviceaccounts", "system:authenticated"},
		AuthorizationDecision: "allow",
		AuthorizationReason:   `RBAC: allowed by RoleBinding "app-reader/default" of Role "secret-reader" to ServiceAccount "app/default"`,
	}
	gotJSON, _ := json.Marshal(a)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("alert\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestEvaluateStagesOfOneRequestGiveOneAlertID(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	var all []string
	for _, stage := range []string{"RequestReceived", "ResponseStarted", "ResponseComplete"} {
		got, err := ev.Evaluate(context.Background(), decode(t, fmt.Sprintf(secretRead, stage)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ids(got)...)
	}
	want := []string{
		"secret-read-by-non-node/3f9e34f0-52e8-44bc-88fb-10ae742d2a0a",
		"secret-read-by-non-node/3f9e34f0-52e8-44bc-88fb-10ae742d2a0a",
	}
	if !slices.Equal(all, want) {
		t.Errorf("alert ids over the three stages = %v, want %v (none at RequestReceived, the same id at the others)", all, want)
	}
}

func TestEvaluateDeploymentDeletedInDefault(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	data, err := os.ReadFile("../../shared/corpus/falco-trace-files/delete_deployment.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.Evaluate(context.Background(), decode(t, string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Rule != "deployment-deleted-in-default" {
		t.Fatalf("got %v, want one deployment-deleted-in-default alert", ids(got))
	}
	a := got[0]
	if a.ID != "deployment-deleted-in-default/"+a.AuditID || a.Name != "nginx-deployment" || a.Namespace != "default" ||
		a.Output != "minikube-user deleted deployment default/nginx-deployment" {
		t.Errorf("alert = %+v", a)
	}
}

func TestEvaluateNeverPutsSecretDataInAlerts(t *testing.T) {
	set := ruleSet(t, `
rules:
  - id: show-secret
    severity: low
    condition: event.objectRef.resource == "secrets"
    output: >
      "req=%s resp=%s".format([event.requestObject, event.responseObject])
`)
	ev := NewEvaluator(set, NewMemoryThresholds())
	f, err := os.Open("../../shared/corpus/packt-learn-kubernetes-security/audit-records.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var n int
	for sc.Scan() {
		got, err := ev.Evaluate(context.Background(), decode(t, sc.Text()))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			n++
			js, _ := json.Marshal(a)
			// eXl5Cg== is the base64 secret value of secret-3 in the corpus.
			if strings.Contains(string(js), "eXl5Cg==") {
				t.Errorf("alert carries secret data: %s", js)
			}
			if !strings.Contains(a.Output, alert.Redacted) {
				t.Errorf("output %q shows no redaction marker", a.Output)
			}
		}
	}
	if n != 1 {
		t.Fatalf("got %d alerts, want 1 for the one secret in the corpus", n)
	}
}

func TestEvaluateRuleErrorsAreNoMatchAndReported(t *testing.T) {
	set := ruleSet(t, `
rules:
  - id: bad-index
    severity: low
    condition: event.requestObject.spec.replicas > 2
  - id: too-costly
    severity: low
    condition: >
      cel.bind(a, event.verb + "0123456789012345678901234567890123456789",
      cel.bind(b, a + a + a + a + a + a + a + a + a + a,
      cel.bind(c, b + b + b + b + b + b + b + b + b + b,
      cel.bind(d, c + c + c + c + c + c + c + c + c + c,
      cel.bind(e, d + d + d + d + d + d + d + d + d + d,
      cel.bind(f, e + e + e + e + e + e + e + e + e + e,
      f.size() > 0))))))
  - id: fine
    severity: low
    condition: event.verb == "get"
`)
	var mu sync.Mutex
	failed := map[string]string{}
	ev := NewEvaluator(set, NewMemoryThresholds(), WithErrorHandler(func(id string, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed[id] = err.Error()
	}))
	got, err := ev.Evaluate(context.Background(), decode(t, fmt.Sprintf(secretRead, "ResponseComplete")))
	if err != nil {
		t.Fatalf("rule errors must not fail the event: %v", err)
	}
	if !slices.Equal(ids(got), []string{"fine/3f9e34f0-52e8-44bc-88fb-10ae742d2a0a"}) {
		t.Errorf("alerts = %v, want only the rule that works", ids(got))
	}
	if !strings.Contains(failed["bad-index"], "no such key") {
		t.Errorf("bad-index error = %q, want a missing key", failed["bad-index"])
	}
	if !strings.Contains(failed["too-costly"], "cost limit") {
		t.Errorf("too-costly error = %q, want the cost limit", failed["too-costly"])
	}
}

func TestEvaluateIsSafeForConcurrentUse(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	events := corpusEvents(t, "../../shared/corpus/falco-trace-files/create_nginx_pod_privileged.json",
		"../../shared/corpus/falco-trace-files/exec_pod.json")
	want := map[string]int{}
	for _, e := range events {
		got, err := ev.Evaluate(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			want[a.ID]++
		}
	}
	var wg sync.WaitGroup
	results := make([]map[string]int, 8)
	for g := range results {
		wg.Go(func() {
			seen := map[string]int{}
			for range 20 {
				for _, e := range events {
					got, err := ev.Evaluate(context.Background(), e)
					if err != nil {
						t.Error(err)
						return
					}
					for _, a := range got {
						seen[a.ID]++
					}
				}
			}
			results[g] = seen
		})
	}
	wg.Wait()
	for g, seen := range results {
		for id, n := range want {
			if seen[id] != 20*n {
				t.Errorf("goroutine %d saw %s %d times, want %d", g, id, seen[id], 20*n)
			}
		}
	}
}

func corpusEvents(t testing.TB, files ...string) []*audit.Event {
	t.Helper()
	var out []*audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			out = append(out, decode(t, line))
		}
	}
	return out
}

func TestEvaluateHonoursCancellation(t *testing.T) {
	ev := NewEvaluator(defaultSet(t), NewMemoryThresholds())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ev.Evaluate(ctx, decode(t, fmt.Sprintf(secretRead, "ResponseComplete"))); err == nil {
		t.Error("Evaluate with a done context succeeded")
	}
}
