package rules

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode"
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

// githubAnchors are the anchors GitHub gives the headings of a Markdown
// file: lowercased, punctuation but - and _ dropped, spaces as dashes, a
// repeat numbered.
func githubAnchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Every rule of the pack links to a section of docs/rules.md that exists.
func TestDefaultPackRunbooksExist(t *testing.T) {
	const base = "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#"
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := githubAnchors(string(guide))
	for _, r := range set.Rules() {
		anchor, ok := strings.CutPrefix(r.RunbookURL, base)
		switch {
		case !ok:
			t.Errorf("%s: runbook_url %q is not a section of docs/rules.md (%s…)", r.ID, r.RunbookURL, base)
		case !anchors[anchor]:
			t.Errorf("%s: runbook_url names #%s, which no heading of docs/rules.md has", r.ID, anchor)
		}
	}
}
