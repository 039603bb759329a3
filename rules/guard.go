package rules

import (
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// The resource index leaves rules that watch every resource: anonymous
// requests, denied requests, impersonation. They are evaluated on most
// events and almost never match. A guard is the part of a condition that
// plain Go can decide from the decoded event: comparisons of its fields
// with literals, combined by &&, || and !. When the guard is false, the
// condition is false, and CEL need not run.
//
// Soundness rests on one invariant: a guard that returns false implies the
// expression it was read from evaluates to false, not to an error value.
// Atoms read fields that are total (an absent value reads as its zero
// value, as in CEL), so they are exact; && and || keep the invariant
// because CEL's logical operators are commutative over errors (false &&
// error is false); ! is only taken of an exact guard. The one difference a
// skipped rule makes is that it cannot exceed a resource limit: CEL aborts
// a whole evaluation on the cost limit, even one that && would have made
// false, so a rule that blows its budget on events its guard rejects now
// counts fewer errors. It never matches differently.

// guard is a condition on an event, read from CEL. exact says that it is
// the expression's value, not only a necessary condition of it.
type guard struct {
	test  func(*audit.Event) bool
	exact bool
}

// guardBuilder reads guards from checked conditions and the macros they use.
type guardBuilder struct {
	lists  map[string][]string
	macros map[string]celast.Expr
	memo   map[string]*guard
	// probes holds, per field path, the literal values guards compare it
	// with: the values worth moving an event through to test them.
	probes map[string][]string
	// paths are the event's values by path, from its field table.
	paths map[string]audit.Path
}

func newGuardBuilder(lists map[string][]string, macros map[string]celast.Expr) *guardBuilder {
	b := &guardBuilder{lists: lists, macros: macros, memo: map[string]*guard{}, probes: map[string][]string{},
		paths: map[string]audit.Path{}}
	for _, p := range audit.Paths() {
		b.paths[p.Path] = p
	}
	return b
}

// condition returns the guard of a rule's condition, nil when there is
// nothing Go can decide.
func (b *guardBuilder) condition(e celast.Expr) func(*audit.Event) bool {
	if g := b.expr(e); g != nil {
		return g.test
	}
	return nil
}

// expr returns the guard of e, nil when it cannot be read.
func (b *guardBuilder) expr(e celast.Expr) *guard {
	switch e.Kind() {
	case celast.LiteralKind:
		if v, ok := e.AsLiteral().(types.Bool); ok {
			return &guard{test: func(*audit.Event) bool { return bool(v) }, exact: true}
		}
	case celast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "macros" && !sel.IsTestOnly() {
			return b.macro(sel.FieldName())
		}
		if sel.IsTestOnly() {
			return b.has(sel)
		}
	case celast.CallKind:
		return b.call(e.AsCall())
	}
	return nil
}

func (b *guardBuilder) macro(name string) *guard {
	return macroOnce(b.memo, b.macros, name, b.expr)
}

func (b *guardBuilder) call(call celast.CallExpr) *guard {
	args := call.Args()
	switch fn := call.FunctionName(); fn {
	case operators.LogicalAnd:
		return b.and(args)
	case operators.LogicalOr:
		return b.or(args)
	case operators.LogicalNot:
		if len(args) == 1 {
			if g := b.expr(args[0]); g != nil && g.exact {
				test := g.test
				return &guard{test: func(ev *audit.Event) bool { return !test(ev) }, exact: true}
			}
		}
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		if len(args) == 2 {
			return b.compare(fn, args[0], args[1])
		}
	case operators.In:
		if len(args) == 2 {
			return b.in(args[0], args[1])
		}
	case "startsWith", "endsWith", "contains":
		if call.IsMemberFunction() && len(args) == 1 {
			return b.stringFunc(fn, call.Target(), args[0])
		}
	}
	return nil
}

func (b *guardBuilder) and(args []celast.Expr) *guard {
	var tests []func(*audit.Event) bool
	exact := true
	for _, arg := range args {
		g := b.expr(arg)
		if g == nil {
			exact = false
			continue
		}
		exact = exact && g.exact
		tests = append(tests, g.test)
	}
	switch len(tests) {
	case 0:
		return nil
	case 1:
		return &guard{test: tests[0], exact: exact}
	}
	return &guard{test: func(ev *audit.Event) bool {
		for _, t := range tests {
			if !t(ev) {
				return false
			}
		}
		return true
	}, exact: exact}
}

func (b *guardBuilder) or(args []celast.Expr) *guard {
	tests := make([]func(*audit.Event) bool, 0, len(args))
	exact := true
	for _, arg := range args {
		g := b.expr(arg)
		if g == nil {
			return nil // that branch may hold whatever the others say
		}
		exact = exact && g.exact
		tests = append(tests, g.test)
	}
	if len(tests) == 0 {
		return nil
	}
	return &guard{test: func(ev *audit.Event) bool {
		for _, t := range tests {
			if t(ev) {
				return true
			}
		}
		return false
	}, exact: exact}
}

// compare reads a field compared with a literal: strings for equality,
// integers for any comparison.
func (b *guardBuilder) compare(op string, lhs, rhs celast.Expr) *guard {
	if _, ok := fieldPath(lhs); !ok {
		lhs, rhs = rhs, lhs
		op = flip(op)
	}
	path, ok := fieldPath(lhs)
	if !ok || rhs.Kind() != celast.LiteralKind {
		return nil
	}
	switch lit := rhs.AsLiteral().(type) {
	case types.String:
		get := getter[string](b, path)
		if get == nil {
			return nil
		}
		s := string(lit)
		b.probe(path, s)
		switch op {
		case operators.Equals:
			return &guard{test: func(ev *audit.Event) bool { return get(ev) == s }, exact: true}
		case operators.NotEquals:
			return &guard{test: func(ev *audit.Event) bool { return get(ev) != s }, exact: true}
		}
	case types.Int:
		get := getter[int64](b, path)
		if get == nil {
			return nil
		}
		n := int64(lit)
		for _, k := range []int64{n - 1, n, n + 1} {
			b.probe(path, strconv.FormatInt(k, 10))
		}
		var test func(int64) bool
		switch op {
		case operators.Equals:
			test = func(v int64) bool { return v == n }
		case operators.NotEquals:
			test = func(v int64) bool { return v != n }
		case operators.Less:
			test = func(v int64) bool { return v < n }
		case operators.LessEquals:
			test = func(v int64) bool { return v <= n }
		case operators.Greater:
			test = func(v int64) bool { return v > n }
		case operators.GreaterEquals:
			test = func(v int64) bool { return v >= n }
		}
		return &guard{test: func(ev *audit.Event) bool { return test(get(ev)) }, exact: true}
	}
	return nil
}

// flip mirrors a comparison so that its operands can change sides.
func flip(op string) string {
	switch op {
	case operators.Less:
		return operators.Greater
	case operators.LessEquals:
		return operators.GreaterEquals
	case operators.Greater:
		return operators.Less
	case operators.GreaterEquals:
		return operators.LessEquals
	}
	return op
}

// in reads `field in [literals]`, `field in lists.x` and
// `"literal" in <list field>`.
func (b *guardBuilder) in(elem, list celast.Expr) *guard {
	if path, ok := fieldPath(elem); ok {
		get := getter[string](b, path)
		vals, ok := b.values(list)
		if get == nil || !ok {
			return nil
		}
		for _, v := range vals {
			b.probe(path, v)
		}
		return &guard{test: func(ev *audit.Event) bool { return slices.Contains(vals, get(ev)) }, exact: true}
	}
	path, ok := fieldPath(list)
	if !ok || elem.Kind() != celast.LiteralKind {
		return nil
	}
	s, ok := elem.AsLiteral().(types.String)
	get := getter[[]string](b, path)
	if !ok || get == nil {
		return nil
	}
	b.probe(path, string(s))
	return &guard{test: func(ev *audit.Event) bool { return slices.Contains(get(ev), string(s)) }, exact: true}
}

func (b *guardBuilder) stringFunc(fn string, target, arg celast.Expr) *guard {
	path, ok := fieldPath(target)
	if !ok || arg.Kind() != celast.LiteralKind {
		return nil
	}
	lit, ok := arg.AsLiteral().(types.String)
	get := getter[string](b, path)
	if !ok || get == nil {
		return nil
	}
	s := string(lit)
	b.probe(path, s)
	b.probe(path, s+"x")
	var test func(string) bool
	switch fn {
	case "startsWith":
		test = func(v string) bool { return strings.HasPrefix(v, s) }
	case "endsWith":
		test = func(v string) bool { return strings.HasSuffix(v, s) }
	default:
		test = func(v string) bool { return strings.Contains(v, s) }
	}
	return &guard{test: func(ev *audit.Event) bool { return test(get(ev)) }, exact: true}
}

// has reads has(event.x) for the event's optional parts.
func (b *guardBuilder) has(sel celast.SelectExpr) *guard {
	op := sel.Operand()
	if op.Kind() != celast.IdentKind || op.AsIdent() != "event" {
		return nil
	}
	p, ok := b.paths[sel.FieldName()]
	if !ok || !p.Optional {
		return nil
	}
	b.probe(p.Path, "")
	return &guard{test: p.IsSet, exact: true}
}

func (b *guardBuilder) values(e celast.Expr) ([]string, bool) {
	switch e.Kind() {
	case celast.ListKind:
		var out []string
		for _, el := range e.AsList().Elements() {
			if el.Kind() != celast.LiteralKind {
				return nil, false
			}
			s, ok := el.AsLiteral().(types.String)
			if !ok {
				return nil, false
			}
			out = append(out, string(s))
		}
		return out, true
	case celast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "lists" && !sel.IsTestOnly() {
			vals, ok := b.lists[sel.FieldName()]
			return slices.Clone(vals), ok
		}
	}
	return nil, false
}

func (b *guardBuilder) probe(path, v string) {
	if !slices.Contains(b.probes[path], v) {
		b.probes[path] = append(b.probes[path], v)
	}
}

// fieldPath returns "a.b" for event.a.b.
func fieldPath(e celast.Expr) (string, bool) {
	var parts []string
	for e.Kind() == celast.SelectKind {
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return "", false
		}
		parts = append(parts, sel.FieldName())
		e = sel.Operand()
	}
	if e.Kind() != celast.IdentKind || e.AsIdent() != "event" || len(parts) == 0 {
		return "", false
	}
	slices.Reverse(parts)
	return strings.Join(parts, "."), true
}

// getter returns the getter of the value at path as CEL reads it (absent
// parts read as zero values), nil for paths that are not values of Go type
// T.
func getter[T any](b *guardBuilder, path string) func(*audit.Event) T {
	get, _ := b.paths[path].Get.(func(*audit.Event) T)
	return get
}
