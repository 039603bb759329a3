package analysis

import (
	"slices"
	"strings"

	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/audit"
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
	// Users is what the condition demands of event.user.
	Users Users
	// Fields are the event's values the rule decides on (its condition
	// and the expressions of its threshold, exceptions and suppression,
	// through the macros they use; not its output), by their schema path: "user.groups", "objectRef.resource", "requestObject" for any
	// read inside a body. Sorted; a path read whole leaves out its
	// members.
	Fields []string
}

// Clone returns n with lists of its own.
func (n Needs) Clone() Needs {
	for _, l := range n.lists() {
		*l = slices.Clone(*l)
	}
	n.Fields = slices.Clone(n.Fields)
	n.Users = n.Users.clone()
	return n
}

func (n *Needs) lists() []*[]string {
	return []*[]string{&n.Resources, &n.Subresources, &n.APIGroups, &n.Verbs, &n.Namespaces, &n.Names}
}

// needsPaths are the fields of Needs' lists, the fields kube-apiserver's
// audit policy can select on, in the order of Needs.lists.
var needsPaths = []string{"objectRef.resource", "objectRef.subresource", "objectRef.apiGroup", "verb",
	"objectRef.namespace", "objectRef.name"}

// Condition reads a rule's condition once: its guard, what plain Go can
// decide of it (nil when nothing), and its Needs.
func (a *Analyzer) Condition(e celast.Expr) (func(*audit.Event) bool, Needs) {
	x := Read(e, a.lists)
	var n Needs
	for i, l := range n.lists() {
		*l = a.needs[i].fold(x.Cond)
	}
	a.addBodies(&n, x)
	n.Users = a.users(x.Cond)
	var test func(*audit.Event) bool
	if g := a.guards.fold(x.Cond); g != nil {
		test = g.test
	}
	return test, n
}

// Bodies records in n whether e, or a macro it uses, reads a body: for the
// expressions of a threshold, which matter only for that.
func (a *Analyzer) Bodies(n *Needs, e celast.Expr) {
	a.addBodies(n, Read(e, a.lists))
}

// bodyReads is what an expression reads of the event: whether it reads
// each body, and the schema paths of all it reads.
type bodyReads struct {
	request, response bool
	paths             []string
}

func (a *Analyzer) addBodies(n *Needs, x *Expr) {
	b := a.reads(x, map[string]bool{})
	n.RequestObject = n.RequestObject || b.request
	n.ResponseObject = n.ResponseObject || b.response
	n.Fields = mergeFields(n.Fields, b.paths)
}

func (a *Analyzer) reads(x *Expr, visiting map[string]bool) bodyReads {
	var out bodyReads
	for _, f := range x.Fields {
		switch f {
		case "requestObject":
			out.request = true
		case "responseObject":
			out.response = true
		}
	}
	for _, p := range x.Paths {
		out.paths = mergeFields(out.paths, []string{schemaPath(a.schema, p)})
	}
	for _, name := range x.Macros {
		m := a.macroBodies(name, visiting)
		out.request = out.request || m.request
		out.response = out.response || m.response
		out.paths = mergeFields(out.paths, m.paths)
	}
	return out
}

// schemaPath is the longest part of path that is a value of the event:
// requestObject for requestObject.spec.hostNetwork.
func schemaPath(schema map[string]bool, path string) string {
	for !schema[path] {
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return path
		}
		path = path[:i]
	}
	return path
}

// mergeFields adds paths to fields, sorted, leaving out a path whose
// parent is read whole and the parents of paths read further.
func mergeFields(fields, paths []string) []string {
	out := slices.Clone(fields)
	for _, p := range paths {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.DeleteFunc(out, func(p string) bool {
		return slices.ContainsFunc(out, func(q string) bool { return strings.HasPrefix(q, p+".") })
	})
}

func (a *Analyzer) macroBodies(name string, visiting map[string]bool) bodyReads {
	if b, ok := a.bodies[name]; ok {
		return b
	}
	x, ok := a.macro(name)
	if !ok || visiting[name] { // cycles are rejected by compilation anyway
		return bodyReads{}
	}
	visiting[name] = true
	b := a.reads(x, visiting)
	a.bodies[name] = b
	return b
}
