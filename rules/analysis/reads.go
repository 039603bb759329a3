package analysis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	celast "github.com/google/cel-go/common/ast"
)

// The bodies are dynamic, and the event's maps (annotations, a user's
// extra) are maps: selecting a key that is not there is an evaluation
// error, which makes the rule not match, and a rule test with match: false
// passes for the wrong reason. Absent struct fields read as zero values
// and cannot error. Reads are safe written with optional syntax
// (x.?a.b, x[?"k"], .orValue), under a has() test of the path (has(x.a) &&
// x.a.b, or !has(x.a) || ..., or a ternary on it), with "k" in x, or inside
// a comprehension over the value read (x.?m.orValue({}).exists(k, x.m[k])).

// UnguardedRead is a selection of a key of a body or map that no guard makes safe.
type UnguardedRead struct {
	// Line and Col place the read in the expression as CEL does: line
	// from 1, column from 0.
	Line, Col int
	// Path is the read as written, from where it starts:
	// "event.requestObject.spec.hostNetwork". Optional is it with every
	// unguarded step optional: "event.requestObject.?spec.?hostNetwork".
	Path, Optional string
}

// mapRoots are the event's values in which a missing key is an error.
var mapRoots = []string{"requestObject", "responseObject", "annotations", "user.extra", "impersonatedUser.extra"}

// UnguardedReads lists the reads of keys of bodies and maps in a checked
// expression that may be missing when it is evaluated.
func UnguardedReads(ast *cel.Ast) []UnguardedRead {
	native := ast.NativeRep()
	r := &reader{src: []rune(ast.Source().Content()), info: native.SourceInfo()}
	r.walk(native.Expr(), nil, nil)
	return r.out
}

// val is a body, a map or a value read from one: canon is its path with
// bound variables resolved, what guards are keyed by. opt marks an
// optional, from which further reads cannot error.
type val struct {
	canon string
	opt   bool
}

type reader struct {
	src  []rune
	info *celast.SourceInfo
	out  []UnguardedRead
}

func with(set map[string]bool, paths ...string) map[string]bool {
	if len(paths) == 0 {
		return set
	}
	out := make(map[string]bool, len(set)+len(paths))
	for k := range set {
		out[k] = true
	}
	for _, p := range paths {
		// A path that is present has every part above it present.
		for p != "" {
			out[p] = true
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return out
}

func bind(scope map[string]*val, name string, v *val) map[string]*val {
	out := make(map[string]*val, len(scope)+1)
	for k, x := range scope {
		out[k] = x
	}
	out[name] = v // nil shadows an outer binding of the name
	return out
}

// value is what e is, when it is a body, a map or read from one.
func (r *reader) value(e celast.Expr, scope map[string]*val) *val {
	switch e.Kind() {
	case celast.IdentKind:
		return scope[e.AsIdent()]
	case celast.SelectKind:
		if path, ok := fieldPath(e); ok && slices.Contains(mapRoots, path) {
			return &val{canon: "event." + path}
		}
		sel := e.AsSelect()
		if v := r.value(sel.Operand(), scope); v != nil && !sel.IsTestOnly() {
			return &val{canon: v.canon + "." + sel.FieldName(), opt: v.opt}
		}
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		switch fn := c.FunctionName(); {
		case (fn == operators.Index || fn == operators.OptIndex || fn == operators.OptSelect) && len(args) == 2:
			v := r.value(args[0], scope)
			if v == nil {
				return nil
			}
			key := r.key(args[1])
			return &val{canon: v.canon + key, opt: v.opt || fn != operators.Index}
		case (fn == "orValue" || fn == "value") && c.IsMemberFunction():
			if v := r.value(c.Target(), scope); v != nil && v.opt {
				return &val{canon: v.canon}
			}
		case fn == operators.Add && len(args) == 2:
			if r.value(args[0], scope) != nil && r.value(args[1], scope) != nil {
				return &val{canon: "#" + strconv.FormatInt(e.ID(), 10)}
			}
		}
	case celast.ListKind:
		elems := e.AsList().Elements()
		for _, el := range elems {
			if v := r.value(el, scope); v == nil || v.opt {
				return nil
			}
		}
		if len(elems) > 0 {
			return &val{canon: "#" + strconv.FormatInt(e.ID(), 10)}
		}
	}
	return nil
}

// key is the path step of an index: a literal string key reads as a
// field, a variable by its name.
func (r *reader) key(e celast.Expr) string {
	switch e.Kind() {
	case celast.LiteralKind:
		if s, ok := e.AsLiteral().(types.String); ok {
			if isName(string(s)) {
				return "." + string(s)
			}
			return "[" + strconv.Quote(string(s)) + "]"
		}
		return "[" + fmt.Sprint(e.AsLiteral().Value()) + "]"
	case celast.IdentKind:
		return "[" + e.AsIdent() + "]"
	}
	return "[#" + strconv.FormatInt(e.ID(), 10) + "]"
}

func isName(s string) bool {
	for i, c := range s {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// step returns the operand of a read that can error: a plain selection or
// index of a body or map.
func (r *reader) step(e celast.Expr, scope map[string]*val) (celast.Expr, bool) {
	var operand celast.Expr
	switch e.Kind() {
	case celast.SelectKind:
		if e.AsSelect().IsTestOnly() {
			return nil, false
		}
		operand = e.AsSelect().Operand()
	case celast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
			return nil, false
		}
		operand = c.Args()[0]
	default:
		return nil, false
	}
	if v := r.value(operand, scope); v != nil && !v.opt {
		return operand, true
	}
	return nil, false
}

func (r *reader) walk(e celast.Expr, guarded map[string]bool, scope map[string]*val) {
	if _, ok := r.step(e, scope); ok {
		r.chain(e, guarded, scope)
		return
	}
	switch e.Kind() {
	case celast.SelectKind:
		r.walk(e.AsSelect().Operand(), guarded, scope)
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		switch c.FunctionName() {
		case operators.LogicalAnd, operators.LogicalOr:
			// CEL's && and || are commutative over errors, so a guard in
			// any operand covers the others.
			guards := r.guards
			if c.FunctionName() == operators.LogicalOr {
				guards = r.negGuards
			}
			for i, a := range args {
				var paths []string
				for j, b := range args {
					if j != i {
						paths = append(paths, guards(b, scope)...)
					}
				}
				r.walk(a, with(guarded, paths...), scope)
			}
			return
		case operators.Conditional:
			if len(args) == 3 {
				r.walk(args[0], guarded, scope)
				r.walk(args[1], with(guarded, r.guards(args[0], scope)...), scope)
				r.walk(args[2], with(guarded, r.negGuards(args[0], scope)...), scope)
				return
			}
		}
		if c.IsMemberFunction() {
			r.walk(c.Target(), guarded, scope)
		}
		for _, a := range args {
			r.walk(a, guarded, scope)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		r.walk(c.IterRange(), guarded, scope)
		r.walk(c.AccuInit(), guarded, scope)
		inner := bind(scope, c.AccuVar(), r.value(c.AccuInit(), scope))
		if rng := r.value(c.IterRange(), scope); rng != nil {
			// The loop runs only over what is there.
			inner = bind(inner, c.IterVar(), &val{canon: rng.canon + "[]", opt: rng.opt})
			guarded = with(guarded, rng.canon, rng.canon+"["+c.IterVar()+"]")
		} else {
			inner = bind(inner, c.IterVar(), nil)
		}
		if c.HasIterVar2() {
			inner = bind(inner, c.IterVar2(), nil)
		}
		r.walk(c.LoopCondition(), guarded, inner)
		r.walk(c.LoopStep(), guarded, inner)
		r.walk(c.Result(), guarded, inner)
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			r.walk(el, guarded, scope)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			r.walk(me.Key(), guarded, scope)
			r.walk(me.Value(), guarded, scope)
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			r.walk(f.AsStructField().Value(), guarded, scope)
		}
	}
}

// guards are the paths that are present when e is true: has(x.a) and
// "a" in x, and those of the operands of &&.
func (r *reader) guards(e celast.Expr, scope map[string]*val) []string {
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if v := r.value(sel.Operand(), scope); sel.IsTestOnly() && v != nil && !v.opt {
			return []string{v.canon + "." + sel.FieldName()}
		}
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		switch c.FunctionName() {
		case operators.LogicalAnd:
			var out []string
			for _, a := range args {
				out = append(out, r.guards(a, scope)...)
			}
			return out
		case operators.In:
			if v := r.value(args[1], scope); v != nil && !v.opt && args[0].Kind() == celast.LiteralKind {
				return []string{v.canon + r.key(args[0])}
			}
		}
	}
	return nil
}

// negGuards are the paths that are present when e is false.
func (r *reader) negGuards(e celast.Expr, scope map[string]*val) []string {
	if e.Kind() != celast.CallKind {
		return nil
	}
	c := e.AsCall()
	switch c.FunctionName() {
	case operators.LogicalNot:
		return r.guards(c.Args()[0], scope)
	case operators.LogicalOr:
		var out []string
		for _, a := range c.Args() {
			out = append(out, r.negGuards(a, scope)...)
		}
		return out
	}
	return nil
}

// chain reports the outermost read e and the reads under it, from the
// first that no guard covers.
func (r *reader) chain(e celast.Expr, guarded map[string]bool, scope map[string]*val) {
	var steps []celast.Expr
	root := e
	for {
		operand, ok := r.step(root, scope)
		if !ok {
			break
		}
		steps = append(steps, root)
		root = operand
	}
	slices.Reverse(steps)
	r.walk(root, guarded, scope)
	base := r.value(root, scope)
	canon := base.canon
	first := -1
	var written, optional strings.Builder
	prefix := r.text(root, steps[0])
	written.WriteString(prefix)
	optional.WriteString(prefix)
	for i, s := range steps {
		var plain, opt string
		if s.Kind() == celast.SelectKind {
			name := s.AsSelect().FieldName()
			canon += "." + name
			plain, opt = "."+name, ".?"+name
		} else {
			k := s.AsCall().Args()[1]
			r.walk(k, guarded, scope)
			canon += r.key(k)
			kt := r.keyText(k)
			plain, opt = "["+kt+"]", "[?"+kt+"]"
		}
		if first < 0 && !guarded[canon] {
			first = i
		}
		written.WriteString(plain)
		if first >= 0 {
			optional.WriteString(opt)
		} else {
			optional.WriteString(plain)
		}
	}
	if first < 0 {
		return
	}
	loc := r.info.GetStartLocation(leftmost(root).ID())
	r.out = append(r.out, UnguardedRead{Line: loc.Line(), Col: loc.Column(), Path: written.String(), Optional: optional.String()})
}

// text is the source of root, up to where the first read after it starts.
func (r *reader) text(root, next celast.Expr) string {
	start, ok1 := r.info.GetOffsetRange(leftmost(root).ID())
	stop, ok2 := r.info.GetOffsetRange(next.ID())
	if !ok1 || !ok2 || start.Start < 0 || stop.Start > int32(len(r.src)) || start.Start > stop.Start {
		return "…"
	}
	return strings.TrimSpace(string(r.src[start.Start:stop.Start]))
}

func (r *reader) keyText(k celast.Expr) string {
	switch k.Kind() {
	case celast.LiteralKind:
		if s, ok := k.AsLiteral().(types.String); ok {
			return strconv.Quote(string(s))
		}
	case celast.IdentKind:
		return k.AsIdent()
	}
	return "…"
}

// leftmost is the first node of e in the source.
func leftmost(e celast.Expr) celast.Expr {
	for {
		switch e.Kind() {
		case celast.SelectKind:
			e = e.AsSelect().Operand()
			continue
		case celast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				e = c.Target()
				continue
			}
			if len(c.Args()) > 0 && isOperator(c.FunctionName()) {
				e = c.Args()[0]
				continue
			}
		}
		return e
	}
}

func isOperator(fn string) bool {
	_, ok := operators.FindReverse(fn)
	return ok || fn == operators.Index || fn == operators.OptIndex || fn == operators.OptSelect
}
