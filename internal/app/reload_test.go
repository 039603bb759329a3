package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
)

const ruleExec = `
  - id: exec-seen
    title: Exec into a pod
    severity: low
    condition: event.objectRef.subresource == "exec"
`

const ruleDelete = `
  - id: configmap-deleted
    title: ConfigMap deleted
    severity: medium
    condition: event.verb == "delete" && event.objectRef.resource == "configmaps"
`

func writeRules(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue returns the value of one sample line, e.g.
// `vigil_engine_events_total`, or "" when absent.
func metricValue(body, sample string) string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestReloadUnderLoad swaps the rule set while events stream in: every
// event is evaluated exactly once, the old rule keeps alerting across the
// swap, the new rule alerts on everything after it, a broken rule file is
// rejected with its position while the running set goes on, and the
// metrics show what happened.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	rulesPath := filepath.Join(dir, "rules.yaml")
	writeRules(t, rulesPath, "rules:"+ruleExec)
	s := newSink(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
ingest:
  files: [{path: %s, poll_interval: 10ms}]
default_rules: false
rules: [%s]
reload: {watch: false}
metrics: {listen: "127.0.0.1:0"}
destinations:
  - {name: sink, type: webhook, url: %q}
`, filepath.Join(dir, "data"), logPath, rulesPath, s.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	r := start(t, cfg, logs)
	base := "http://" + r.app.MetricsAddr().String()
	v1 := r.app.RulesVersion()

	const total = 600 // alternating exec and configmap deletion
	line := func(i int) string {
		if i%2 == 0 {
			return event(fmt.Sprintf("x-%d", i), "ResponseComplete", "alice", nil, "create", "pods", "default", "web", 101)
		}
		return event(fmt.Sprintf("d-%d", i), "ResponseComplete", "alice", nil, "delete", "configmaps", "default", fmt.Sprintf("cm-%d", i), 200)
	}
	// Subresource exec is set by rewriting the pods line.
	execLine := func(i int) string {
		return strings.Replace(line(i), `"resource":"pods"`, `"resource":"pods","subresource":"exec"`, 1)
	}
	appendRange := func(from, to int) {
		for i := from; i < to; i += 10 {
			var lines []string
			for j := i; j < min(i+10, to); j++ {
				if j%2 == 0 {
					lines = append(lines, execLine(j))
				} else {
					lines = append(lines, line(j))
				}
			}
			appendLines(t, logPath, lines...)
			time.Sleep(2 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendRange(0, 200)
	}()
	// Swap while the first third is still streaming in.
	writeRules(t, rulesPath, "rules:"+ruleExec+ruleDelete)
	if err := r.app.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	<-done
	v2 := r.app.RulesVersion()
	if v2 == v1 {
		t.Fatal("rules version did not change after a reload that added a rule")
	}
	swappedAt := 200 // every line from here on was appended after Reload returned
	appendRange(200, 400)

	// A broken file is rejected with its position; the running set stays.
	writeRules(t, rulesPath, "rules:"+ruleExec+ruleDelete+"  - id: broken\n    title: x\n    severity: low\n    condition: event.objectRef.resourse == \"pods\"\n")
	err = r.app.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), rulesPath+":") || !strings.Contains(err.Error(), "resourse") {
		t.Fatalf("Reload of a broken file: %v, want an error naming %s and the bad field", err, rulesPath)
	}
	if got := r.app.RulesVersion(); got != v2 {
		t.Fatalf("version after a rejected reload = %s, want %s", got, v2)
	}
	appendRange(400, total)

	var want []string
	for i := range total {
		switch {
		case i%2 == 0:
			want = append(want, fmt.Sprintf("exec-seen/x-%d", i))
		case i >= swappedAt:
			want = append(want, fmt.Sprintf("configmap-deleted/d-%d", i))
		}
	}
	s.waitFor(t, want...)
	var evaluated int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		evaluated = 0
		for _, w := range r.app.Workers() {
			evaluated += w.Stats().Events.Load()
		}
		if evaluated >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if evaluated != total {
		t.Errorf("events evaluated = %d, want exactly %d (none dropped, none twice)", evaluated, total)
	}
	for id, n := range s.snapshot() {
		if n != 1 {
			t.Errorf("alert %s delivered %d times", id, n)
		}
	}

	m := scrape(t, base)
	checks := map[string]string{
		`vigil_ingest_events_total{cluster="e2e",source="file"}`:        "600",
		`vigil_engine_events_total`:                                     "600",
		`vigil_rule_matches_total{rule="exec-seen"}`:                    "300",
		`vigil_alerts_published_total{rule="exec-seen",severity="low"}`: "300",
		fmt.Sprintf(`vigil_rules_info{version=%q}`, v2):                 "1",
		fmt.Sprintf(`vigil_rules_info{version=%q}`, v1):                 "",
		`vigil_notify_delivered_alerts_total{destination="sink"}`:       "",
		`vigil_rule_errors_total{rule="exec-seen"}`:                     "",
		`vigil_reload_failures_total{what="rules"}`:                     "1",
		`vigil_reload_failures_total{what="config"}`:                    "0",
	}
	for sample, want := range checks {
		got := metricValue(m, sample)
		if sample == `vigil_notify_delivered_alerts_total{destination="sink"}` || strings.HasPrefix(sample, "vigil_rule_eval_seconds_total") {
			if got == "" || got == "0" {
				t.Errorf("%s = %q, want the delivered count", sample, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%s = %q, want %q", sample, got, want)
		}
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", resp.StatusCode)
	}
	r.stop(t)
}

const ruleSecretRead = `rules:
  - id: secret-read
    title: Secret read
    severity: medium
    condition: event.verb == "get" && event.objectRef.resource == "secrets"
`

// TestReloadRoutesByNamespace runs vigil whole, from an audit log to two
// webhook receivers, with routes by namespace: team-a's alerts go to
// team-a's receiver and the rest elsewhere. Reloads then replace the
// routes; rejected ones (a condition that does not compile, a destination
// that is not running) keep the routes in force, are logged at error with
// their file:line:col and counted by what was rejected.
func TestReloadRoutesByNamespace(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	rulesPath := filepath.Join(dir, "rules.yaml")
	cfgPath := filepath.Join(dir, "vigil.yaml")
	writeRules(t, rulesPath, ruleSecretRead)
	teamA, rest := newSink(t), newSink(t)
	writeConfig := func(routes string) {
		t.Helper()
		writeRules(t, cfgPath, fmt.Sprintf(`cluster: e2e
data_dir: %s
ingest:
  files: [{path: %s, poll_interval: 10ms}]
default_rules: false
rules: [%s]
reload: {watch: false}
metrics: {listen: "127.0.0.1:0"}
destinations:
  - {name: team-a, type: webhook, url: %q}
  - {name: rest, type: webhook, url: %q}
  - {name: pager, type: stdout}
routes:
%s`, filepath.Join(dir, "data"), logPath, rulesPath, teamA.srv.URL, rest.srv.URL, routes))
	}
	writeConfig("  - {match: {namespace: [team-a]}, to: [team-a]}\n  - {to: [rest]}\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// pager is left out of the running destinations, as a destination
	// added to the file after start-up is.
	cfg.Destinations = cfg.Destinations[:2]
	logs := &logtest.Buffer{}
	r := start(t, cfg, logs)
	base := "http://" + r.app.MetricsAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	read := func(id, ns string) string {
		return event(id, "ResponseComplete", "alice", nil, "get", "secrets", ns, "db", 200)
	}
	appendLines(t, logPath, read("a1", "team-a"), read("b1", "team-b"))
	teamA.waitFor(t, "secret-read/a1")
	rest.waitFor(t, "secret-read/b1")

	// A condition that does not compile: rejected at its place.
	writeConfig("  - match:\n      when: alert.namespce == \"team-b\"\n    to: [team-a]\n  - {to: [rest]}\n")
	want := cfgPath + `:15:19: routes[0].match.when: unknown field "namespce" of alert, did you mean "namespace"?`
	if err := r.app.Reload(ctx); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Reload with a bad when: %v, want %q", err, want)
	}
	if !regexp.MustCompile(`level=ERROR msg="reload rejected; keeping the running rules and routes" what=config problem=".*` + regexp.QuoteMeta(`vigil.yaml:15:19: routes[0].match.when: unknown field`)).MatchString(logs.String()) {
		t.Errorf("the rejection is not logged at error with its position:\n%s", logs.String())
	}
	// A destination the process does not run: rejected by the dispatcher.
	writeConfig("  - {to: [pager]}\n")
	if err := r.app.Reload(ctx); err == nil || !strings.Contains(err.Error(), `unknown destination "pager"`) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("Reload routing to a destination not running: %v", err)
	}
	appendLines(t, logPath, read("a2", "team-a"), read("b2", "team-b"))
	teamA.waitFor(t, "secret-read/a2")
	rest.waitFor(t, "secret-read/b2")

	// A good reload: team-b's alerts now go to team-a's receiver too.
	writeConfig("  - {match: {namespace: [team-a, team-b]}, to: [team-a]}\n  - {to: [rest]}\n")
	if err := r.app.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	appendLines(t, logPath, read("a3", "team-a"), read("b3", "team-b"), read("c3", "team-c"))
	teamA.waitFor(t, "secret-read/a3", "secret-read/b3")
	rest.waitFor(t, "secret-read/c3")

	for _, tc := range []struct {
		name string
		s    *sink
		want []string
	}{
		{"team-a", teamA, []string{"a1", "a2", "a3", "b3"}},
		{"rest", rest, []string{"b1", "b2", "c3"}},
	} {
		got := tc.s.snapshot()
		if len(got) != len(tc.want) {
			t.Errorf("%s received %v, want %v", tc.name, got, tc.want)
		}
		for _, id := range tc.want {
			if got["secret-read/"+id] != 1 {
				t.Errorf("%s received secret-read/%s %d times, want once", tc.name, id, got["secret-read/"+id])
			}
		}
	}
	m := scrape(t, base)
	for sample, want := range map[string]string{
		`vigil_reload_failures_total{what="config"}`: "1",
		`vigil_reload_failures_total{what="routes"}`: "1",
		`vigil_reload_failures_total{what="rules"}`:  "0",
	} {
		if got := metricValue(m, sample); got != want {
			t.Errorf("%s = %q, want %q", sample, got, want)
		}
	}
	r.stop(t)
}
