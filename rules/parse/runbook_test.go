package parse

import (
	"slices"
	"strings"
	"testing"
)

func TestRunbookURL(t *testing.T) {
	f, probs := parseText(t, "rules:\n  - id: r\n    severity: low\n    condition: \"true\"\n    runbook_url: https://wiki.example.com/runbooks/r#what-to-do\n")
	if len(probs) != 0 || len(f.Rules) != 1 {
		t.Fatalf("problems %v", probs)
	}
	if got := f.Rules[0].RunbookURL; got != "https://wiki.example.com/runbooks/r#what-to-do" {
		t.Errorf("RunbookURL = %q", got)
	}
}

// A runbook_url that is no link a responder could follow is an error at
// the value, and the rule keeps no URL.
func TestRunbookURLRejected(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"wiki/runbooks/r", `r.yaml:5:18: r: runbook_url "wiki/runbooks/r" is not an absolute http or https URL`},
		{"ftp://example.com/r", `r.yaml:5:18: r: runbook_url "ftp://example.com/r" is not an absolute http or https URL`},
		{"https://", `r.yaml:5:18: r: runbook_url "https://" is not an absolute http or https URL`},
		{"javascript:alert(1)", `r.yaml:5:18: r: runbook_url "javascript:alert(1)" is not an absolute http or https URL`},
		{`"https://x.example/a|<!channel>"`, `r.yaml:5:18: r: runbook_url "https://x.example/a|<!channel>" holds "|", which a URL must percent-encode`},
		{`"https://x.example/a b"`, `r.yaml:5:18: r: runbook_url "https://x.example/a b" holds " ", which a URL must percent-encode`},
		{"[https://x.example]", `r.yaml:5:18: r: runbook_url must be a string`},
		{"https://x.example/" + strings.Repeat("a", MaxRunbookURL), `is longer than 2048 bytes`},
	} {
		f, probs := parseText(t, "rules:\n  - id: r\n    severity: low\n    condition: \"true\"\n    runbook_url: "+tc.value+"\n")
		if len(probs) != 1 || !strings.Contains(probs[0], tc.want) {
			t.Errorf("runbook_url %.40s: problems %q, want %q", tc.value, probs, tc.want)
		}
		if len(f.Rules) != 1 || f.Rules[0].RunbookURL != "" {
			t.Errorf("runbook_url %.40s: rules %+v", tc.value, f.Rules)
		}
	}
}

func TestOverrideReplacesRunbookURL(t *testing.T) {
	f, probs := parseText(t, "overrides:\n  - rule: r\n    runbook_url: https://wiki.example.com/ours\n  - rule: s\n    runbook_url: /relative\n")
	want := []string{
		`r.yaml:5:18: s: runbook_url "/relative" is not an absolute http or https URL like https://wiki.example.com/runbooks/secret-read`,
		`r.yaml:4:5: s: override of rule "s" changes nothing (give exceptions or fields to replace)`,
	}
	if !slices.Equal(probs, want) {
		t.Errorf("problems\n  %s\nwant\n  %s", strings.Join(probs, "\n  "), strings.Join(want, "\n  "))
	}
	if len(f.Overrides) != 1 {
		t.Fatalf("%d overrides, want the valid one", len(f.Overrides))
	}
	r := Rule{Meta: Meta{ID: "r", RunbookURL: "https://example.com/theirs"}}
	f.Overrides[0].Apply(&r)
	if r.RunbookURL != "https://wiki.example.com/ours" {
		t.Errorf("after the override RunbookURL = %q", r.RunbookURL)
	}
}
