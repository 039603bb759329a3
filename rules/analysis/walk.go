// Package analysis reads what checked rule conditions demand of an audit
// event, before any event arrives. One walker reads the boolean structure of
// a condition: &&, || and ! over macros and over the atoms plain Go can
// decide (an event field compared with a literal, a field in a list of
// literals, a literal in a list field, a string function of a field with a
// literal, has() of an optional part of the event, exists over a list field
// testing its elements against literals). It also notes every
// event field and macro an expression refers to, anywhere in it. The
// prefilter's constraints, the guards and a rule's Needs are folds over what
// it reads; a condition it cannot read demands nothing.
package analysis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	celast "github.com/google/cel-go/common/ast"
)

// Op is what a Cond is.
type Op uint8

// The ops of conditions. The atoms are Literal to Has. exists over a list
// field reads as the || of a Contains per value it tests.
const (
	Unknown    Op = iota // anything else
	And                  // all of Args
	Or                   // any of Args
	Not                  // not Args[0]
	Macro                // macros.<Name>
	Literal              // Bool
	Compare              // event.<Path> <Name> Lit, Name an operator with the field on its left
	In                   // event.<Path> in Values
	Contains             // Lit in event.<Path>, a list field
	StringFunc           // event.<Path>.<Name>(Lit): startsWith, endsWith or contains
	Has                  // has(event.<Path>)
)

// Cond is the boolean structure of a condition, as far as it can be read.
type Cond struct {
	Op   Op
	Args []*Cond
	Bool bool
	// Name is the macro, the comparison's operator or the string function.
	Name string
	// Path is the event field, as "objectRef.resource".
	Path string
	Lit  ref.Val
	// Values are the strings of In, from literals or a named list; never
	// nil, so that an empty list demands a value no event has.
	Values []string
}

// Expr is what the walker reads of one expression.
type Expr struct {
	Cond *Cond
	// Fields are the event's own fields the expression selects anywhere
	// (event.requestObject in a comprehension included), and Macros the
	// macros it refers to, in the order they appear.
	Fields []string
	Macros []string
	// Paths are the event's values the expression reads, by their dotted
	// path as written ("user.groups", "requestObject.spec"), has() tests
	// included: a path and its parents, once each.
	Paths []string
}

// Read reads an expression; lists are the rule set's named lists.
func Read(e celast.Expr, lists map[string][]string) *Expr {
	x := &Expr{Cond: cond(e, lists)}
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.SelectKind {
			return
		}
		if path, ok := selectPath(e); ok && !slices.Contains(x.Paths, path) {
			x.Paths = append(x.Paths, path)
		}
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind {
			switch op.AsIdent() {
			case "event":
				x.Fields = append(x.Fields, sel.FieldName())
			case "macros":
				x.Macros = append(x.Macros, sel.FieldName())
			}
		}
	}))
	return x
}

var unknown = &Cond{Op: Unknown}

func cond(e celast.Expr, lists map[string][]string) *Cond {
	switch e.Kind() {
	case celast.LiteralKind:
		if v, ok := e.AsLiteral().(types.Bool); ok {
			return &Cond{Op: Literal, Bool: bool(v)}
		}
	case celast.SelectKind:
		sel := e.AsSelect()
		op := sel.Operand()
		if op.Kind() != celast.IdentKind {
			break
		}
		switch {
		case op.AsIdent() == "macros" && !sel.IsTestOnly():
			return &Cond{Op: Macro, Name: sel.FieldName()}
		case op.AsIdent() == "event" && sel.IsTestOnly():
			return &Cond{Op: Has, Path: sel.FieldName()}
		}
	case celast.CallKind:
		return call(e.AsCall(), lists)
	case celast.ComprehensionKind:
		return exists(e.AsComprehension(), lists)
	}
	return unknown
}

// exists reads `event.<list field>.exists(x, x in <list>)` and
// `.exists(x, x == "literal")`: that one of the values is in the field,
// which is how a condition tests a user's groups against a named list. It
// is exactly the || of a Contains per value, and false for none.
func exists(c celast.ComprehensionExpr, lists map[string][]string) *Cond {
	path, ok := fieldPath(c.IterRange())
	init, step, result := c.AccuInit(), c.LoopStep(), c.Result()
	if !ok || c.HasIterVar2() || init.Kind() != celast.LiteralKind || init.AsLiteral() != types.False ||
		!isIdent(result, c.AccuVar()) || step.Kind() != celast.CallKind {
		return unknown
	}
	or := step.AsCall()
	if or.FunctionName() != operators.LogicalOr || len(or.Args()) != 2 || !isIdent(or.Args()[0], c.AccuVar()) {
		return unknown
	}
	vals, ok := elementTest(or.Args()[1], c.IterVar(), lists)
	if !ok {
		return unknown
	}
	if len(vals) == 0 {
		return &Cond{Op: Literal, Bool: false}
	}
	out := &Cond{Op: Or}
	for _, v := range vals {
		out.Args = append(out.Args, &Cond{Op: Contains, Path: path, Lit: types.String(v)})
	}
	return out
}

// elementTest reads the predicate of exists over x: `x in <list>` or
// `x == "literal"`, as the values x may be.
func elementTest(e celast.Expr, x string, lists map[string][]string) ([]string, bool) {
	if e.Kind() != celast.CallKind {
		return nil, false
	}
	c := e.AsCall()
	if len(c.Args()) != 2 {
		return nil, false
	}
	lhs, rhs := c.Args()[0], c.Args()[1]
	switch c.FunctionName() {
	case operators.In:
		if isIdent(lhs, x) {
			return values(rhs, lists)
		}
	case operators.Equals:
		if isIdent(rhs, x) {
			lhs, rhs = rhs, lhs
		}
		if isIdent(lhs, x) && rhs.Kind() == celast.LiteralKind {
			if s, ok := rhs.AsLiteral().(types.String); ok {
				return []string{string(s)}, true
			}
		}
	}
	return nil, false
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

func call(c celast.CallExpr, lists map[string][]string) *Cond {
	args := c.Args()
	switch fn := c.FunctionName(); fn {
	case operators.LogicalAnd, operators.LogicalOr:
		op := And
		if fn == operators.LogicalOr {
			op = Or
		}
		out := &Cond{Op: op, Args: make([]*Cond, len(args))}
		for i, a := range args {
			out.Args[i] = cond(a, lists)
		}
		return out
	case operators.LogicalNot:
		if len(args) == 1 {
			return &Cond{Op: Not, Args: []*Cond{cond(args[0], lists)}}
		}
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		if len(args) == 2 {
			return compare(fn, args[0], args[1])
		}
	case operators.In:
		if len(args) == 2 {
			return in(args[0], args[1], lists)
		}
	case "startsWith", "endsWith", "contains":
		if c.IsMemberFunction() && len(args) == 1 {
			if path, ok := fieldPath(c.Target()); ok && args[0].Kind() == celast.LiteralKind {
				return &Cond{Op: StringFunc, Name: fn, Path: path, Lit: args[0].AsLiteral()}
			}
		}
	}
	return unknown
}

// compare reads a field compared with a literal, on either side.
func compare(op string, lhs, rhs celast.Expr) *Cond {
	if _, ok := fieldPath(lhs); !ok {
		lhs, rhs = rhs, lhs
		op = flip(op)
	}
	path, ok := fieldPath(lhs)
	if !ok || rhs.Kind() != celast.LiteralKind {
		return unknown
	}
	return &Cond{Op: Compare, Name: op, Path: path, Lit: rhs.AsLiteral()}
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
func in(elem, list celast.Expr, lists map[string][]string) *Cond {
	if path, ok := fieldPath(elem); ok {
		if vals, ok := values(list, lists); ok {
			return &Cond{Op: In, Path: path, Values: vals}
		}
		return unknown
	}
	if path, ok := fieldPath(list); ok && elem.Kind() == celast.LiteralKind {
		return &Cond{Op: Contains, Path: path, Lit: elem.AsLiteral()}
	}
	return unknown
}

// values reads a list of string literals or a named list.
func values(e celast.Expr, lists map[string][]string) ([]string, bool) {
	switch e.Kind() {
	case celast.ListKind:
		out := []string{}
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
			if vals, ok := lists[sel.FieldName()]; ok {
				return append([]string{}, vals...), true
			}
		}
	}
	return nil, false
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

// selectPath returns "a.b" for event.a.b and for has(event.a.b).
func selectPath(e celast.Expr) (string, bool) {
	if sel := e.AsSelect(); sel.IsTestOnly() {
		parent, ok := fieldPath(sel.Operand())
		if !ok {
			if op := sel.Operand(); op.Kind() != celast.IdentKind || op.AsIdent() != "event" {
				return "", false
			}
			return sel.FieldName(), true
		}
		return parent + "." + sel.FieldName(), true
	}
	return fieldPath(e)
}

// String shows the condition as the analyses see it, for tests and
// debugging.
func (c *Cond) String() string {
	var b strings.Builder
	c.write(&b)
	return b.String()
}

func (c *Cond) write(b *strings.Builder) {
	args := func(name string) {
		b.WriteString(name + "(")
		for i, a := range c.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			a.write(b)
		}
		b.WriteString(")")
	}
	switch c.Op {
	case And:
		args("and")
	case Or:
		args("or")
	case Not:
		args("not")
	case Macro:
		b.WriteString("macros." + c.Name)
	case Literal:
		b.WriteString(strconv.FormatBool(c.Bool))
	case Compare:
		fmt.Fprintf(b, "%s %s %v", c.Path, strings.Trim(c.Name, "_"), c.Lit)
	case In:
		fmt.Fprintf(b, "%s in %q", c.Path, c.Values)
	case Contains:
		fmt.Fprintf(b, "%v in %s", c.Lit, c.Path)
	case StringFunc:
		fmt.Fprintf(b, "%s.%s(%v)", c.Path, c.Name, c.Lit)
	case Has:
		fmt.Fprintf(b, "has(%s)", c.Path)
	default:
		b.WriteString("?")
	}
}
