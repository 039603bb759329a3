package rules

import (
	"slices"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Most audit events (lease renewals, status updates, watches) can match no
// rule at all. The prefilter reads each condition for what it demands of
// event.objectRef.resource and event.verb, so that an event is only shown
// to rules that could match it. The analysis is conservative: a condition it
// does not understand constrains nothing.

// constraint is the set of values a field must have for a condition to hold;
// nil means any value.
type constraint []string

func anyValue() constraint { return nil }

func (c constraint) and(o constraint) constraint {
	switch {
	case c == nil:
		return o
	case o == nil:
		return c
	}
	out := constraint{}
	for _, v := range c {
		if slices.Contains(o, v) {
			out = append(out, v)
		}
	}
	return out
}

func (c constraint) or(o constraint) constraint {
	if c == nil || o == nil {
		return nil
	}
	out := slices.Clone(c)
	for _, v := range o {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// analyzer derives constraints on one event field from expressions.
type analyzer struct {
	path   []string // e.g. ["objectRef", "resource"]
	lists  map[string][]string
	macros map[string]celast.Expr
	memo   map[string]constraint
}

func newAnalyzer(path []string, lists map[string][]string, macros map[string]celast.Expr) *analyzer {
	return &analyzer{path: path, lists: lists, macros: macros, memo: map[string]constraint{}}
}

func (a *analyzer) expr(e celast.Expr) constraint {
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "macros" && !sel.IsTestOnly() {
			return a.macro(sel.FieldName())
		}
	case celast.CallKind:
		call := e.AsCall()
		args := call.Args()
		switch call.FunctionName() {
		case operators.LogicalAnd:
			c := anyValue()
			for _, arg := range args {
				c = c.and(a.expr(arg))
			}
			return c
		case operators.LogicalOr:
			if len(args) == 0 {
				return nil
			}
			c := a.expr(args[0])
			for _, arg := range args[1:] {
				c = c.or(a.expr(arg))
			}
			return c
		case operators.Equals:
			if len(args) == 2 {
				if a.isField(args[0]) {
					return a.literal(args[1])
				}
				if a.isField(args[1]) {
					return a.literal(args[0])
				}
			}
		case operators.In:
			if len(args) == 2 && a.isField(args[0]) {
				return a.values(args[1])
			}
		}
	}
	return anyValue()
}

func (a *analyzer) macro(name string) constraint {
	return macroOnce(a.memo, a.macros, name, a.expr)
}

// macroOnce reads the named macro's expression with read, once: the result
// is kept in memo. A macro that refers to itself reads as the zero value
// (compilation rejects such cycles anyway).
func macroOnce[T any](memo map[string]T, macros map[string]celast.Expr, name string, read func(celast.Expr) T) T {
	if v, ok := memo[name]; ok {
		return v
	}
	var zero T
	memo[name] = zero
	e, ok := macros[name]
	if !ok {
		return zero
	}
	v := read(e)
	memo[name] = v
	return v
}

// isField reports whether e is event.<path...>.
func (a *analyzer) isField(e celast.Expr) bool {
	for i := len(a.path) - 1; i >= 0; i-- {
		if e.Kind() != celast.SelectKind {
			return false
		}
		sel := e.AsSelect()
		if sel.FieldName() != a.path[i] || sel.IsTestOnly() {
			return false
		}
		e = sel.Operand()
	}
	return e.Kind() == celast.IdentKind && e.AsIdent() == "event"
}

func (a *analyzer) literal(e celast.Expr) constraint {
	if e.Kind() == celast.LiteralKind {
		if s, ok := e.AsLiteral().(types.String); ok {
			return constraint{string(s)}
		}
	}
	return nil
}

func (a *analyzer) values(e celast.Expr) constraint {
	switch e.Kind() {
	case celast.ListKind:
		out := constraint{}
		for _, el := range e.AsList().Elements() {
			c := a.literal(el)
			if c == nil {
				return nil
			}
			out = append(out, c...)
		}
		return out
	case celast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "lists" {
			if vals, ok := a.lists[sel.FieldName()]; ok {
				return slices.Clone(vals)
			}
		}
	}
	return nil
}

// index selects, per stage and resource, the rules worth evaluating, in
// file order.
type index struct {
	byStage map[string]*stageIndex
	// known holds the stages kube-apiserver writes, so that the lookup
	// every event makes is a switch rather than a map access.
	known [4]*stageIndex
}

// knownStage is the slot of a stage in index.known, -1 for others.
func knownStage(stage string) int {
	switch stage {
	case audit.StageRequestReceived:
		return 0
	case audit.StageResponseStarted:
		return 1
	case audit.StageResponseComplete:
		return 2
	case audit.StagePanic:
		return 3
	}
	return -1
}

type stageIndex struct {
	byResource map[string][]*Rule
	other      []*Rule // rules that do not constrain the resource
}

func (ix *index) candidates(stage, resource string) []*Rule {
	var si *stageIndex
	if k := knownStage(stage); k >= 0 {
		si = ix.known[k]
	} else {
		si = ix.byStage[stage]
	}
	if si == nil {
		return nil
	}
	if rs, ok := si.byResource[resource]; ok {
		return rs
	}
	return si.other
}

func buildIndex(rules []*Rule) *index {
	ix := &index{byStage: map[string]*stageIndex{}}
	for _, r := range rules {
		if !r.Enabled {
			continue
		}
		for _, st := range r.Stages {
			si := ix.byStage[st]
			if si == nil {
				si = &stageIndex{byResource: map[string][]*Rule{}}
				ix.byStage[st] = si
			}
			if r.resources == nil {
				si.other = append(si.other, r)
				for res := range si.byResource {
					si.byResource[res] = append(si.byResource[res], r)
				}
				continue
			}
			for _, res := range r.resources {
				if _, ok := si.byResource[res]; !ok {
					si.byResource[res] = slices.Clone(si.other)
				}
				si.byResource[res] = append(si.byResource[res], r)
			}
		}
	}
	for st, si := range ix.byStage {
		if k := knownStage(st); k >= 0 {
			ix.known[k] = si
		}
	}
	return ix
}
