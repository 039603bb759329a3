package analysis

import (
	"slices"
	"testing"

	"github.com/google/cel-go/cel"

	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// parsed returns the expression tree of src. The walker reads the shape of
// an expression, which type-checking does not change.
func parsed(t *testing.T, src string) celast.Expr {
	t.Helper()
	env, err := cel.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Parse(src)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", src, iss.Err())
	}
	return ast.NativeRep().Expr()
}

func TestReadsTheBooleanStructure(t *testing.T) {
	lists := map[string][]string{"admins": {"alice", "bob"}}
	for src, want := range map[string]string{
		`event.verb == "get" && !(event.objectRef.resource in ["pods", "secrets"])`: `and(verb == get, not(objectRef.resource in ["pods" "secrets"]))`,
		`"delete" == event.verb || macros.is_admin`:                                 `or(verb == delete, macros.is_admin)`,
		`400 <= event.responseStatus.code`:                                          `responseStatus.code >= 400`,
		`event.user.username in lists.admins`:                                       `user.username in ["alice" "bob"]`,
		`event.verb in []`:                                                          `verb in []`,
		`"system:masters" in event.user.groups`:                                     `system:masters in user.groups`,
		`event.requestURI.startsWith("/api")`:                                       `requestURI.startsWith(/api)`,
		`has(event.impersonatedUser) && true`:                                       `and(has(impersonatedUser), true)`,
		`event.user.groups.exists(g, g == "x")`:                                     `or(x in user.groups)`,
		`event.user.groups.exists(g, g in lists.admins)`:                            `or(alice in user.groups, bob in user.groups)`,
		`event.user.groups.exists(g, g in [])`:                                      `false`,
		`event.user.groups.exists(g, g.startsWith("x"))`:                            `?`,
		`event.user.groups.all(g, g == "x")`:                                        `?`,
		`event.verb == event.user.username`:                                         `?`,
		`event.verb in lists.unknown`:                                               `?`,
		`has(event.objectRef.name)`:                                                 `?`,
	} {
		if got := Read(parsed(t, src), lists).Cond.String(); got != want {
			t.Errorf("%s\n got %s\nwant %s", src, got, want)
		}
	}
}

func TestReadsReferencesAnywhere(t *testing.T) {
	x := Read(parsed(t, `event.requestObject.spec.containers.exists(c, macros.privileged || has(event.responseObject.x)) && macros.b`), nil)
	if !slices.Equal(x.Fields, []string{"requestObject", "responseObject"}) || !slices.Equal(x.Macros, []string{"privileged", "b"}) {
		t.Errorf("fields %v, macros %v", x.Fields, x.Macros)
	}
}

// TestFolds checks the three analyses on conditions through a macro: the
// prefilter's constraint on the resource, the guard and the body reads.
func TestFolds(t *testing.T) {
	macros := map[string]celast.Expr{
		"pods":   parsed(t, `event.objectRef.resource == "pods"`),
		"denied": parsed(t, `event.responseStatus.code >= 400`),
		"self":   parsed(t, `macros.self`),
		"body":   parsed(t, `has(event.requestObject.spec)`),
	}
	a := New(map[string][]string{"rs": {"secrets", "configmaps"}}, macros)
	cases := []struct {
		cond      string
		resources []string
		guarded   bool
		pass, not *audit.Event
		request   bool
	}{{
		cond:      `(macros.pods || event.objectRef.resource in lists.rs) && macros.denied`,
		resources: []string{"pods", "secrets", "configmaps"},
		guarded:   true,
		pass:      &audit.Event{ObjectRef: &audit.ObjectReference{Resource: "pods"}, ResponseStatus: &audit.Status{Code: 403}},
		not:       &audit.Event{ObjectRef: &audit.ObjectReference{Resource: "pods"}, ResponseStatus: &audit.Status{Code: 200}},
	}, {
		cond:    `!macros.denied && macros.body`,
		guarded: true,
		pass:    &audit.Event{},
		not:     &audit.Event{ResponseStatus: &audit.Status{Code: 500}},
		request: true,
	}, {
		cond: `macros.self || event.verb == "get"`,
	}}
	for _, c := range cases {
		guard, needs := a.Condition(parsed(t, c.cond))
		if !slices.Equal(needs.Resources, c.resources) || (guard != nil) != c.guarded || needs.RequestObject != c.request {
			t.Errorf("%s: resources %q, guarded %v, reads requestObject %v", c.cond, needs.Resources, guard != nil, needs.RequestObject)
			continue
		}
		if guard != nil && (!guard(c.pass) || guard(c.not)) {
			t.Errorf("%s: guard passes %v and %v", c.cond, guard(c.pass), guard(c.not))
		}
	}
	if !slices.Equal(a.MacroRefs("self"), []string{"self"}) || a.MacroRefs("missing") != nil {
		t.Errorf("macro refs: %v, %v", a.MacroRefs("self"), a.MacroRefs("missing"))
	}
}

// A rule's Fields are every value of the event it reads, through macros
// too, to the schema's depth: reads inside a body or a map are reads of
// it.
func TestNeedsFields(t *testing.T) {
	macros := map[string]celast.Expr{
		"node": parsed(t, `event.user.groups.exists(g, g == "system:nodes") || event.user.username.startsWith("system:node:")`),
	}
	a := New(nil, macros)
	_, needs := a.Condition(parsed(t, `!macros.node && has(event.impersonatedUser) &&
		has(event.requestObject.spec) && event.requestObject.spec.hostNetwork == true && event.annotations["a"] == "" &&
		event.objectRef.resource == "pods" && has(event.objectRef.name)`))
	a.Bodies(&needs, parsed(t, `event.impersonatedUser.username + event.responseObject.status.phase`))
	want := []string{"annotations", "impersonatedUser.username", "objectRef.name", "objectRef.resource",
		"requestObject", "responseObject", "user.groups", "user.username"}
	if !slices.Equal(needs.Fields, want) {
		t.Errorf("fields %q\n  want %q", needs.Fields, want)
	}
}
