package rules

import (
	"context"
	"os"
	"strings"
	"testing"
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
