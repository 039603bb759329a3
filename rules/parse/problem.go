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
}

// String formats a problem the way compilers do, so editors can jump to it:
// "file:line:col: rule-id: message" (the rule id is left out when the
// problem is not inside a rule).
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
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found while loading rules. A load that finds any
// is rejected whole.
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

// Err returns ps, sorted by place, when it holds any problem, else nil.
func (ps *Problems) Err() error {
	if len(ps.List) == 0 {
		return nil
	}
	ps.sort()
	return ps
}
