package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/rules"
)

func TestPolicyCheckPrintsOneLinePerRuleAndACount(t *testing.T) {
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, newPolicyCmd(), "", "check", "--policy", "../../policy/testdata/nodes-only.yaml")
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(set.Rules())+2 {
		t.Fatalf("%d lines for %d rules:\n%s", len(lines), len(set.Rules()), out)
	}
	for _, want := range []string{
		"partial  Request          privileged-container: logged at Request only where rules[1] (level RequestResponse, userGroups [system:nodes]) applies; rules[2] (level None) does not log it",
		"partial  Metadata         deployment-deleted-in-default: logged at Metadata only where rules[1] (level RequestResponse, userGroups [system:nodes]) applies; rules[2] (level None) does not log it",
		"ok       Metadata         secret-read-by-non-node: logged by rules[0] (level Metadata, resources [secrets])",
		"blind    Metadata         daemonset-created: rules[2] (level None) does not log it; rules[1] (level RequestResponse, userGroups [system:nodes]) logs only users its condition excludes",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no line\n%s\nin\n%s", want, out)
		}
	}
	// The six Secret rules are all logged by rules[0]; the rest only for
	// nodes, which leaves blind the 30 that exclude nodes (or match only
	// anonymous requests).
	if want := fmt.Sprintf("%d rules: 6 ok, %d partial, 30 blind", len(set.Rules()), len(set.Rules())-36); lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
}

func TestPolicyCheckJSONIsAListOfRuleStatusNeedsReason(t *testing.T) {
	out, _, err := run(t, newPolicyCmd(), "", "check", "--policy", "../../policy/testdata/metadata-only.yaml", "--output", "json")
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	var got []map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON list of string objects: %v\n%s", err, out)
	}
	byRule := map[string]map[string]string{}
	for _, r := range got {
		if keys := slices.Sorted(maps.Keys(r)); !slices.Equal(keys, []string{"needs", "reason", "rule", "status"}) {
			t.Errorf("keys %v, want needs, reason, rule, status", keys)
		}
		byRule[r["rule"]] = r
	}
	want := map[string]string{"rule": "ingress-without-tls", "status": "blind", "needs": "Request", "reason": "rules[0] (level Metadata) logs it below Request"}
	if !maps.Equal(byRule["ingress-without-tls"], want) {
		t.Errorf("ingress-without-tls: %v, want %v", byRule["ingress-without-tls"], want)
	}
	if r := byRule["pod-exec-or-attach"]; r["status"] != "ok" || r["needs"] != "Metadata" {
		t.Errorf("pod-exec-or-attach: %v, want ok, needs Metadata", r)
	}
}

func TestPolicyCheckRejectsAnInvalidPolicy(t *testing.T) {
	out, errOut, err := run(t, newPolicyCmd(), "", "check", "--policy", "../../policy/testdata/invalid.yaml")
	if exitCodeOf(err) != 1 {
		t.Fatalf("exit %d (%v), want 1", exitCodeOf(err), err)
	}
	if out != "" {
		t.Errorf("printed a report for an invalid policy:\n%s", out)
	}
	if !strings.Contains(errOut, "../../policy/testdata/invalid.yaml") || !strings.Contains(errOut, `"Loud"`) {
		t.Errorf("stderr %q names neither the file nor the bad level", errOut)
	}
}

func TestPolicyGenerateOutputPassesPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []string
	}{
		{"default pack", nil},
		{"custom rules", []string{"--rules", "../../policy/testdata/custom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			generated, _, err := run(t, newPolicyCmd(), "", append([]string{"generate"}, tc.rules...)...)
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			path := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(path, []byte(generated), 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := run(t, newPolicyCmd(), "", append([]string{"check", "--policy", path, "-o", "json"}, tc.rules...)...)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			var results []struct{ Rule, Status, Reason string }
			if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) == 0 {
				t.Fatalf("check output %v:\n%s", err, out)
			}
			for _, r := range results {
				if r.Status != "ok" {
					t.Errorf("%s: %s: %s", r.Rule, r.Status, r.Reason)
				}
			}
			if t.Failed() {
				t.Logf("generated:\n%s", generated)
			}
		})
	}
}
