package rules

import (
	"github.com/google/cel-go/cel"

	"github.com/vigil-k8s/vigil/rules/analysis"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// warnUnguardedReads warns of each read of a body or map key in x that is
// an evaluation error, and so no match, on an event without it.
func warnUnguardedReads(x parse.Expr, ruleID string, ast *cel.Ast, probs *Problems) {
	for _, r := range analysis.UnguardedReads(ast) {
		line, col := x.At(r.Line, r.Col)
		probs.Add(Problem{File: x.File.Name, Line: line, Col: col, RuleID: ruleID, Warning: true,
			Message: "reads " + r.Path + ", an evaluation error (no match) on events without it: write " +
				r.Optional + ".orValue(...), or test it with has() first"})
	}
}

// Warnings are the problems of the loaded files that did not reject the
// load, sorted by place.
func (s *Set) Warnings() []Problem { return s.warnings }
