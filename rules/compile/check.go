package compile

import (
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/types"

	"github.com/vigil-k8s/vigil/rules/parse"
)

func problemAt(probs *parse.Problems, x parse.Expr, ruleID string, line, col int, format string, args ...any) {
	probs.Add(parse.Problem{File: x.File.Name, Line: line, Col: col, RuleID: ruleID, Message: fmt.Sprintf(format, args...)})
}

// Check parses and type-checks one expression, reporting its problems at
// their place in the file. want nil accepts any type; what names the
// expression in problems ("condition", "macro is_admin").
func (e *Env) Check(x parse.Expr, ruleID string, want *types.Type, what string, probs *parse.Problems) *cel.Ast {
	line, col := x.Pos()
	if strings.TrimSpace(x.Text) == "" {
		problemAt(probs, x, ruleID, line, col, "%s is empty", what)
		return nil
	}
	if len(x.Text) > MaxExpressionLength {
		problemAt(probs, x, ruleID, line, col, "%s is longer than %d bytes", what, MaxExpressionLength)
		return nil
	}
	ast, iss := e.env.Compile(x.Text)
	if iss.Err() != nil {
		for _, ce := range iss.Errors() {
			loc := ce.Location
			// CEL places a bad selection at its dot; the name after it is
			// what the author has to fix.
			if loc != nil && loc.Line() > 0 && strings.HasPrefix(ce.Message, "undefined field") {
				if off := x.Offset(loc.Line(), loc.Column()); off < len(x.Text) && x.Text[off] == '.' {
					loc = common.NewLocation(loc.Line(), loc.Column()+1)
				}
			}
			l, c := 0, 0
			if loc != nil {
				l, c = loc.Line(), loc.Column()
			}
			l, c = x.At(l, c)
			problemAt(probs, x, ruleID, l, c, "%s: %s", what, e.explain(x, ce))
		}
		return nil
	}
	if want != nil && !ast.OutputType().IsExactType(want) && !ast.OutputType().IsExactType(types.DynType) {
		problemAt(probs, x, ruleID, line, col, "%s must be a %s expression, but this one gives %s",
			what, typeWord(want), typeWord(ast.OutputType()))
		return nil
	}
	return ast
}

func typeWord(t *types.Type) string {
	switch {
	case t.IsExactType(types.BoolType):
		return "boolean"
	case t.IsExactType(types.StringType):
		return "string"
	}
	return t.String()
}

// explain rewrites CEL's messages about vigil's own types into the words of
// the rule language.
func (e *Env) explain(x parse.Expr, ce *common.Error) string {
	msg := ce.Message
	f, ok := strings.CutPrefix(msg, "undefined field '")
	if !ok {
		return msg
	}
	name, _, _ := strings.Cut(f, "'")
	before := ""
	if off := x.Offset(ce.Location.Line(), ce.Location.Column()); off <= len(x.Text) {
		before = strings.TrimRight(x.Text[:off], " \t\n")
	}
	kind, known := "field", e.fieldNames
	switch {
	case strings.HasSuffix(before, "macros"):
		kind, known = "macro", e.macroNames
	case strings.HasSuffix(before, "lists"):
		kind, known = "list", e.listNames
	}
	out := fmt.Sprintf("unknown %s %q", kind, name)
	if s := parse.Suggest(name, known); s != "" {
		out += fmt.Sprintf(", did you mean %q?", s)
	}
	return out
}

// Program plans a checked expression. Tracking cost at run time is skipped
// when the checker proves the worst case is within the limit, as it is for
// most conditions: tracking costs more than many of the expressions it
// guards.
func (e *Env) Program(x parse.Expr, ruleID string, ast *cel.Ast, limit uint64, probs *parse.Problems) cel.Program {
	opts := optimizeOptions()
	if est, err := e.env.EstimateCost(ast, e.costs); err != nil || est.Max > limit {
		opts = append(opts, programOptions(limit)...)
	}
	prg, err := e.env.Program(ast, opts...)
	if err != nil {
		line, col := x.Pos()
		problemAt(probs, x, ruleID, line, col, "cannot compile: %v", err)
		return nil
	}
	return prg
}

// CheckCycles rejects macros that refer to themselves, directly or not:
// evaluating one would never end. refs[i] are the macros macros[i] refers
// to.
func CheckCycles(macros []parse.Macro, refs [][]string, probs *parse.Problems) {
	index := map[string]int{}
	for i, d := range macros {
		index[d.Name] = i
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(macros))
	var visit func(i int, path []string) bool
	visit = func(i int, path []string) bool {
		switch state[i] {
		case visiting:
			d := macros[i]
			line, col := d.Expr.Pos()
			problemAt(probs, d.Expr, "", line, col, "macro %q refers to itself: %s",
				d.Name, strings.Join(append(path, d.Name), " -> "))
			return false
		case done:
			return true
		}
		state[i] = visiting
		ok := true
		for _, r := range refs[i] {
			if j, found := index[r]; found && !visit(j, append(path, macros[i].Name)) {
				ok = false
				break
			}
		}
		state[i] = done
		return ok
	}
	for i := range macros {
		if state[i] == unvisited {
			visit(i, nil)
		}
	}
}
