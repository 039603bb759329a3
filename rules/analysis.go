package rules

import (
	"slices"

	celast "github.com/google/cel-go/common/ast"
)

// Needs is what a rule demands of the audit events it can match, read from
// its compiled CEL with the prefilter's analysis: a nil list means any
// value. The reading is conservative, so a rule may match less than its
// Needs say, never more.
type Needs struct {
	Resources    []string // event.objectRef.resource; "" is a non-resource request
	Subresources []string // event.objectRef.subresource; "" is the resource itself
	APIGroups    []string // event.objectRef.apiGroup
	Verbs        []string
	Namespaces   []string // "" is cluster-scoped (or all namespaces)
	Names        []string // event.objectRef.name
	// RequestObject and ResponseObject say whether the condition (or a
	// threshold expression) reads the bodies, which kube-apiserver only logs
	// at levels Request and RequestResponse.
	RequestObject  bool
	ResponseObject bool
}

// Needs returns what the rule's condition demands of an event.
func (r *Rule) Needs() Needs {
	n := r.needs
	for _, l := range []*[]string{&n.Resources, &n.Subresources, &n.APIGroups, &n.Verbs, &n.Namespaces, &n.Names} {
		*l = slices.Clone(*l)
	}
	return n
}

// needsAnalyzer reads the fields that kube-apiserver's audit policy can
// select on, with the same analyzer the prefilter uses.
type needsAnalyzer struct {
	resource, subresource, group, verb, namespace, name *analyzer
	macros                                              map[string]celast.Expr
	bodyMemo                                            map[string]bodyReads
}

type bodyReads struct{ request, response bool }

func newNeedsAnalyzer(lists map[string][]string, macros map[string]celast.Expr) *needsAnalyzer {
	return &needsAnalyzer{
		resource:    newAnalyzer([]string{"objectRef", "resource"}, lists, macros),
		subresource: newAnalyzer([]string{"objectRef", "subresource"}, lists, macros),
		group:       newAnalyzer([]string{"objectRef", "apiGroup"}, lists, macros),
		verb:        newAnalyzer([]string{"verb"}, lists, macros),
		namespace:   newAnalyzer([]string{"objectRef", "namespace"}, lists, macros),
		name:        newAnalyzer([]string{"objectRef", "name"}, lists, macros),
		macros:      macros,
		bodyMemo:    map[string]bodyReads{},
	}
}

func (a *needsAnalyzer) condition(e celast.Expr) Needs {
	n := Needs{
		Resources:    a.resource.expr(e),
		Subresources: a.subresource.expr(e),
		APIGroups:    a.group.expr(e),
		Verbs:        a.verb.expr(e),
		Namespaces:   a.namespace.expr(e),
		Names:        a.name.expr(e),
	}
	a.bodies(&n, e)
	return n
}

// bodies records in n whether e, or a macro it uses, reads a body.
func (a *needsAnalyzer) bodies(n *Needs, e celast.Expr) {
	b := a.reads(e, map[string]bool{})
	n.RequestObject = n.RequestObject || b.request
	n.ResponseObject = n.ResponseObject || b.response
}

func (a *needsAnalyzer) reads(e celast.Expr, visiting map[string]bool) bodyReads {
	var out bodyReads
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		if x.Kind() != celast.SelectKind {
			return
		}
		sel := x.AsSelect()
		op := sel.Operand()
		if op.Kind() != celast.IdentKind {
			return
		}
		switch op.AsIdent() {
		case "event":
			switch sel.FieldName() {
			case "requestObject":
				out.request = true
			case "responseObject":
				out.response = true
			}
		case "macros":
			m := a.macro(sel.FieldName(), visiting)
			out.request = out.request || m.request
			out.response = out.response || m.response
		}
	}))
	return out
}

func (a *needsAnalyzer) macro(name string, visiting map[string]bool) bodyReads {
	if b, ok := a.bodyMemo[name]; ok {
		return b
	}
	e, ok := a.macros[name]
	if !ok || visiting[name] { // cycles are rejected by compilation anyway
		return bodyReads{}
	}
	visiting[name] = true
	b := a.reads(e, visiting)
	a.bodyMemo[name] = b
	return b
}
