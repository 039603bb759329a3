package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/stdout"
)

func run(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func exitCodeOf(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestRulesLintPrintsEachProblemAndExits1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	mustWriteFile(t, path, []byte("rules:\n  - id: r\n    severity: loud\n    condition: event.verbb == \"get\"\n"), 0o600)
	out, _, err := run(t, newRulesCmd(), "", "lint", path)
	if exitCodeOf(err) != 1 {
		t.Fatalf("exit %d (%v), want 1", exitCodeOf(err), err)
	}
	want := []string{
		path + `:3:15: r: severity "loud" is not one of info, low, medium, high, critical`,
		path + `:4:22: r: condition: unknown field "verbb", did you mean "verb"?`,
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lint printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
}

func TestRulesLintPlacesAYAMLSyntaxErrorOnItsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.yaml")
	mustWriteFile(t, path, []byte("rules:\n  - id: r\n    severity: low\n    condition: \"true\"\n     output: x\n"), 0o600)
	out, _, err := run(t, newRulesCmd(), "", "lint", path)
	if exitCodeOf(err) != 1 {
		t.Fatalf("exit %d (%v), want 1", exitCodeOf(err), err)
	}
	if want := path + ":5:1: invalid YAML: did not find expected key\n"; out != want {
		t.Errorf("lint printed %q, want %q", out, want)
	}
}

func TestRulesLintPrintsWarningsAndExits0(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "warn.yaml")
	mustWriteFile(t, path, []byte(`rules:
  - id: host-network
    title: Host network
    severity: low
    condition: event.objectRef.resource == "pods" && event.requestObject.spec.hostNetwork == true
`), 0o600)
	out, _, err := run(t, newRulesCmd(), "", "lint", path)
	if err != nil {
		t.Fatalf("lint exited %d (%v) on warnings alone:\n%s", exitCodeOf(err), err, out)
	}
	want := []string{
		path + ":5:54: host-network: warning: reads event.requestObject.spec.hostNetwork, an evaluation error (no match) on events without it: write event.requestObject.?spec.?hostNetwork.orValue(...), or test it with has() first",
		"ok: 1 rules, 0 tests, 1 warnings",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lint printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	// With an error too, it fails, counting only the error.
	mustWriteFile(t, path, []byte(`rules:
  - id: host-network
    title: Host network
    severity: loud
    condition: event.requestObject.spec.hostNetwork == true
`), 0o600)
	out, _, err = run(t, newRulesCmd(), "", "lint", path)
	if exitCodeOf(err) != 1 || !strings.Contains(err.Error(), "1 problems") || !strings.Contains(out, "host-network: warning: reads") {
		t.Errorf("exit %d (%v), want 1 for 1 problem, printed\n%s", exitCodeOf(err), err, out)
	}
}

func TestRulesLintAndTestPassOnTheDefaultPack(t *testing.T) {
	out, _, err := run(t, newRulesCmd(), "", "lint", "../../rules/default")
	if err != nil || !strings.HasPrefix(out, "ok: ") || strings.Contains(out, "warning") {
		t.Fatalf("lint: %v\n%s", err, out)
	}
	out, _, err = run(t, newRulesCmd(), "", "test", "../../rules/default")
	if err != nil {
		t.Fatalf("test: %v\n%s", err, out)
	}
	if strings.Contains(out, "FAIL") || !strings.Contains(out, " 0 failed") {
		t.Errorf("rule tests of the default pack failed:\n%s", out)
	}
}

func TestRulesTestPrintsWhyACaseFailed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	mustWriteFile(t, path, []byte(`rules:
  - id: get-seen
    severity: low
    condition: event.verb == "get"
tests:
  - name: list is not get
    rule: get-seen
    match: false
    event: {verb: list}
  - name: wrongly expects a match
    rule: get-seen
    match: true
    event: {verb: watch}
`), 0o600)
	out, _, err := run(t, newRulesCmd(), "", "test", path)
	if exitCodeOf(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCodeOf(err))
	}
	for _, want := range []string{
		"pass " + path + ":6: get-seen: list is not get",
		"FAIL " + path + ":10: get-seen: wrongly expects a match: expected a match, the rule did not match",
		"1 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestReplayJSONPrintsOneAlertPerLine(t *testing.T) {
	out, errOut, err := run(t, newReplayCmd(), "", "--output", "json",
		"../../../shared/corpus/falco-trace-files/delete_deployment.json",
		"../../../shared/corpus/falco-trace-files/fal_01_003.json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1:\n%s", len(lines), out)
	}
	var a map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil {
		t.Fatal(err)
	}
	if a["rule"] != "deployment-deleted-in-default" || a["id"] != "deployment-deleted-in-default/"+a["auditID"].(string) {
		t.Errorf("alert %v", a)
	}
	if !strings.Contains(errOut, "fal_01_003.json:1: skipped: ") {
		t.Errorf("malformed line not reported on stderr: %q", errOut)
	}
}

func TestReplayTextWithRulesFromStdin(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "r.yaml")
	mustWriteFile(t, rulesPath, []byte("rules:\n  - id: any-delete\n    severity: low\n    condition: event.verb == \"delete\"\n"), 0o600)
	data, err := os.ReadFile("../../../shared/corpus/falco-trace-files/delete_secret.json")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, newReplayCmd(), string(data), "--rules", rulesPath, "-")
	if err != nil {
		t.Fatal(err)
	}
	alertText := "2020-04-21T17:58:49Z low      any-delete: any-delete: minikube-user delete secrets default/example-secret (200)\n" +
		"    groups: system:masters, system:authenticated\n" +
		"    authorization: allow\n" +
		"    auditID: d1df3fa9-497f-49cf-bd48-60a651df8075\n\n"
	if !strings.HasPrefix(out, alertText) ||
		!strings.Contains(out, "1 events, 1 alerts, 0 malformed lines skipped") ||
		!strings.Contains(out, "      1       1         0          0  low      any-delete") {
		t.Errorf("text output:\n%s", out)
	}
	if strings.Contains(out, "deployment") {
		t.Errorf("--rules must replace the default pack:\n%s", out)
	}
}

// Replay prints an alert as a running vigil's stdout receiver does: the
// text of each alert is stdout.Line of the alert replay --output json gives.
func TestReplayPrintsAlertsAsStdoutDoes(t *testing.T) {
	const log = "../../../shared/corpus/falco-trace-files/delete_secret.json"
	rulesPath := filepath.Join(t.TempDir(), "r.yaml")
	mustWriteFile(t, rulesPath, []byte("rules:\n  - id: any-delete\n    description: Something was deleted.\n    severity: low\n    condition: event.verb == \"delete\"\n"), 0o600)
	text, _, err := run(t, newReplayCmd(), "", "--rules", rulesPath, log)
	if err != nil {
		t.Fatal(err)
	}
	js, _, err := run(t, newReplayCmd(), "", "--rules", rulesPath, "--output", "json", log)
	if err != nil {
		t.Fatal(err)
	}
	var a alert.Alert
	if err := json.Unmarshal([]byte(js), &a); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := stdout.New(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	want := "2020-04-21T17:58:49Z low      any-delete: any-delete: minikube-user delete secrets default/example-secret (200)\n" +
		"    Something was deleted.\n" +
		"    groups: system:masters, system:authenticated\n" +
		"    authorization: allow\n" +
		"    auditID: d1df3fa9-497f-49cf-bd48-60a651df8075\n"
	if buf.String() != want {
		t.Errorf("stdout printed\n%s\nwant\n%s", buf.String(), want)
	}
	if !strings.HasPrefix(text, want+"\n") {
		t.Errorf("replay printed\n%s\nwant it to start with\n%s", text, want)
	}
}

func TestReplaySummarisesRuleErrorsOnStderr(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "r.yaml")
	mustWriteFile(t, rulesPath, []byte("rules:\n  - id: reads-missing-key\n    severity: low\n    condition: event.requestObject.spec.replicas == 1\n"), 0o600)
	out, errOut, err := run(t, newReplayCmd(), "", "--rules", rulesPath, "-o", "json",
		"../../../shared/corpus/falco-trace-files/delete_secret.json")
	if err != nil {
		t.Fatal(err)
	}
	if out != "" || !strings.Contains(errOut, "rule reads-missing-key failed to evaluate on 1 events (counted as no match)") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

func TestReplayWithDefaultShowsWhatTuningHeldBack(t *testing.T) {
	dir := t.TempDir()
	tuning := filepath.Join(dir, "tuning.yaml")
	mustWriteFile(t, tuning, []byte(`overrides:
  - rule: secret-read-by-non-node
    exceptions:
      - name: cert-manager
        when: event.user.username == "system:serviceaccount:cert-manager:cert-manager"
  - rule: secret-access-forbidden
    suppress: {by: [event.user.username], for: 10m}
`), 0o600)
	var log strings.Builder
	line := func(id, user string, code, sec int) {
		fmt.Fprintf(&log, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{"username":%q},`+
			`"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"code":%d},`+
			`"requestReceivedTimestamp":"2026-12-01T10:00:%02d.000000Z","stageTimestamp":"2026-12-01T10:00:%02d.001000Z"}`+"\n",
			id, user, code, sec, sec)
	}
	line("cm-1", "system:serviceaccount:cert-manager:cert-manager", 200, 1)
	line("cm-2", "system:serviceaccount:cert-manager:cert-manager", 200, 2)
	line("app-1", "system:serviceaccount:web:app", 200, 3)
	for i := range 6 {
		line(fmt.Sprintf("probe-%d", i), "mallory", 403, 10+i)
	}
	logPath := filepath.Join(dir, "audit.log")
	mustWriteFile(t, logPath, []byte(log.String()), 0o600)

	out, _, err := run(t, newReplayCmd(), "", "--rules", tuning, "--with-default", logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"      1       3         2          0  high     secret-read-by-non-node  excepted by cert-manager 2\n",
		"      1       6         0          5  medium   secret-access-forbidden\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cert-manager:cert-manager get secrets") {
		t.Errorf("an excepted read alerted:\n%s", out)
	}
}

func TestExportDefaultWritesAPackThatTestsAsItIs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pack")
	out, _, err := run(t, newRulesCmd(), "", "export-default", dir)
	if err != nil || !strings.Contains(out, " rule files to "+dir) {
		t.Fatalf("export-default: %q %v", out, err)
	}
	out, _, err = run(t, newRulesCmd(), "", "test", dir)
	if err != nil || !strings.Contains(out, " passed, 0 failed") || strings.Contains(out, "FAIL") {
		t.Errorf("rules test of the exported pack: %v\n%s", err, out)
	}
	withDefault, _, err := run(t, newRulesCmd(), "", "test", "--with-default")
	if err != nil || lastLine(withDefault) != lastLine(out) {
		t.Errorf("rules test --with-default: %q, want the exported pack's %q (%v)", lastLine(withDefault), lastLine(out), err)
	}
	// The pack's own tests, from the binary, with nothing to point at.
	for _, args := range [][]string{{"test"}, {"test", "--default"}} {
		got, _, err := run(t, newRulesCmd(), "", args...)
		if err != nil || lastLine(got) != lastLine(out) {
			t.Errorf("rules %v: %q, want the exported pack's %q (%v)", args, lastLine(got), lastLine(out), err)
		}
	}
	if _, _, err := run(t, newRulesCmd(), "", "test", "--default", dir); err == nil || !strings.Contains(err.Error(), "--with-default") {
		t.Errorf("rules test --default with a path: %v, want it refused, naming --with-default", err)
	}
	if _, _, err := run(t, newRulesCmd(), "", "export-default", dir); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("a second export into the same folder: %v, want a refusal", err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func mustWriteFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}
