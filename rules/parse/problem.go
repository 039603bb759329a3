// Package parse reads the rule file format: lists, macros, rules and their
// tests, with where each value was written. It checks everything a file
// says on its own (keys, types, ids, severities, stages, thresholds, test
// events) and leaves CEL to the compiler; every problem of a file is
// reported, not only the first.
package parse

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a rule file, located as precisely as the
// YAML and CEL positions allow.
type Problem struct {
	File    string
	Line    int
	Col     int
	RuleID  string
	Message string
	// Warning marks a problem that does not reject the load: something
	// that is allowed but likely not what its author meant.
	Warning bool
}

// String formats a problem the way compilers do, so editors can jump to it:
// "file:line:col: rule-id: message" (the rule id is left out when the
// problem is not inside a rule), with "warning: " before the message of a
// warning.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, max(p.Col, 1))
	}
	b.WriteString(": ")
	if p.RuleID != "" {
		b.WriteString(p.RuleID)
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found while loading rules. A load that finds any
// but warnings is rejected whole.
type Problems struct {
	List []Problem
}

func (ps *Problems) Error() string {
	lines := make([]string, len(ps.List))
	for i, p := range ps.List {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Add records a problem.
func (ps *Problems) Add(p Problem) { ps.List = append(ps.List, p) }

func (ps *Problems) sort() {
	slices.SortStableFunc(ps.List, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// Err returns ps, sorted by place, when it holds any problem that is not a
// warning, else nil.
func (ps *Problems) Err() error {
	if !slices.ContainsFunc(ps.List, func(p Problem) bool { return !p.Warning }) {
		return nil
	}
	ps.sort()
	return ps
}

// Warnings returns the warnings, sorted by place.
func (ps *Problems) Warnings() []Problem {
	ps.sort()
	var out []Problem
	for _, p := range ps.List {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}
