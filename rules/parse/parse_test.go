package parse

import (
	"slices"
	"strings"
	"testing"
)

func parseText(t *testing.T, text string) (*File, []string) {
	t.Helper()
	var probs Problems
	f := Parse(Source{Name: "r.yaml", Data: []byte(text)}, &probs)
	var out []string
	for _, p := range probs.List {
		out = append(out, p.String())
	}
	return f, out
}

func TestParseFillsDefaults(t *testing.T) {
	f, probs := parseText(t, "rules:\n  - id: r\n    severity: low\n    condition: event.verb == \"get\"\n")
	if len(probs) != 0 || len(f.Rules) != 1 {
		t.Fatalf("problems %v, %d rules", probs, len(f.Rules))
	}
	r := f.Rules[0]
	if r.Title != "r" || !r.Enabled || !slices.Equal(r.Stages, []string{"ResponseStarted", "ResponseComplete"}) ||
		r.Tags == nil || r.Condition == nil || r.Condition.Text != `event.verb == "get"` || r.Node.Line != 2 {
		t.Errorf("rule %+v", r)
	}
}

// TestDecodeKeepsTheFirstOfRepeatedKeys: unknown and repeated keys are
// problems at the key, and the first of a repeated key is the one read.
func TestDecodeKeepsTheFirstOfRepeatedKeys(t *testing.T) {
	f, probs := parseText(t, "rules:\n  - id: r\n    severity: low\n    severity: high\n    condition: \"true\"\n    titel: x\n    zzzzzzzzzz: 1\n")
	want := []string{
		`r.yaml:4:5: r: field "severity" given twice`,
		`r.yaml:6:5: r: unknown field "titel", did you mean "title"?`,
		`r.yaml:7:5: r: unknown field "zzzzzzzzzz" (known: id, title, description, runbook_url, severity, tags, condition, output, stages, enabled, threshold, exceptions, suppress, new_terms, sequence)`,
	}
	if !slices.Equal(probs, want) {
		t.Errorf("problems\n  %s\nwant\n  %s", strings.Join(probs, "\n  "), strings.Join(want, "\n  "))
	}
	if len(f.Rules) != 1 || f.Rules[0].Severity != "low" {
		t.Errorf("rules %+v", f.Rules)
	}
}

func TestTestEventsKeepFileOrder(t *testing.T) {
	f, probs := parseText(t, `tests:
  - name: t
    rule: r
    match: true
    events: [{verb: a}, {verb: b}]
    event: {verb: c}
`)
	if len(probs) != 0 || len(f.Tests) != 1 {
		t.Fatalf("problems %v", probs)
	}
	var verbs []string
	for _, ev := range f.Tests[0].Case.Events {
		verbs = append(verbs, ev.Verb)
	}
	if !slices.Equal(verbs, []string{"a", "b", "c"}) {
		t.Errorf("events %v, want a, b, c", verbs)
	}
}

func TestExprAtMapsPositionsToTheFile(t *testing.T) {
	f, _ := parseText(t, "rules:\n  - id: r\n    severity: low\n    condition: |\n      event.verb == \"get\" &&\n      event.x == 1\n")
	c := f.Rules[0].Condition
	// The second line of the literal block is line 6 of the file, indented
	// by 6: column 0 of CEL's line 2 is column 7 of the file.
	if l, col := c.At(2, 0); l != 6 || col != 7 {
		t.Errorf("At(2, 0) = %d:%d, want 6:7", l, col)
	}
	if l, col := c.At(0, 0); l != 4 || col != 16 {
		t.Errorf("At(0, 0) = %d:%d, want the scalar at 4:16", l, col)
	}
}

func TestWarningsDoNotFailALoad(t *testing.T) {
	var ps Problems
	ps.Add(Problem{File: "b.yaml", Line: 3, Col: 5, RuleID: "r", Message: "reads x", Warning: true})
	if err := ps.Err(); err != nil {
		t.Fatalf("warnings alone: %v", err)
	}
	ps.Add(Problem{File: "a.yaml", Line: 1, Col: 1, Message: "bad"})
	if ps.Err() == nil {
		t.Fatal("an error with a warning: no error")
	}
	if got, want := ps.Error(), "a.yaml:1:1: bad\nb.yaml:3:5: r: warning: reads x"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if w := ps.Warnings(); len(w) != 1 || w[0].File != "b.yaml" {
		t.Errorf("warnings %v", w)
	}
}

// TestYAMLSyntaxErrorsKeepTheirLine: yaml.v3 names the line of the mapping
// the error is inside (line 1 and line 3 here), not the line at fault.
func TestYAMLSyntaxErrorsKeepTheirLine(t *testing.T) {
	for _, c := range []struct{ name, file, want string }{{
		name: "mis-indented key",
		file: "rules:\n  - id: r\n    severity: low\n    condition: \"true\"\n     output: x\n  - id: s\n",
		want: "r.yaml:5:1: invalid YAML: did not find expected key",
	}, {
		name: "tab",
		file: "rules:\n  - id: r\n    severity: low\n\tcondition: \"true\"\n  - id: s\n",
		want: "r.yaml:4:1: invalid YAML: found a tab character that violates indentation",
	}} {
		t.Run(c.name, func(t *testing.T) {
			_, probs := parseText(t, c.file)
			if len(probs) != 1 || probs[0] != c.want {
				t.Errorf("problems %q, want %q", probs, c.want)
			}
		})
	}
}
