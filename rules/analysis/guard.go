package analysis

import (
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

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

// guardFold reads guards. Its atoms read the event through the getters of
// the event's field table, which read absent parts as zero values, as CEL
// does.
func (a *Analyzer) guardFold() Fold[*guard] {
	paths := map[string]audit.Path{}
	for _, p := range audit.Paths() {
		paths[p.Path] = p
	}
	return Fold[*guard]{
		Atom: func(c *Cond) *guard { return a.atom(paths, c) },
		And:  and,
		Or:   or,
		Not: func(g *guard) *guard {
			if g == nil || !g.exact {
				return nil
			}
			test := g.test
			return &guard{test: func(ev *audit.Event) bool { return !test(ev) }, exact: true}
		},
	}
}

// getter returns the getter of the value at path, nil for paths that are
// not values of Go type T.
func getter[T any](paths map[string]audit.Path, path string) func(*audit.Event) T {
	get, _ := paths[path].Get.(func(*audit.Event) T)
	return get
}

func and(gs []*guard) *guard {
	var tests []func(*audit.Event) bool
	exact := true
	for _, g := range gs {
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

func or(gs []*guard) *guard {
	tests := make([]func(*audit.Event) bool, 0, len(gs))
	exact := true
	for _, g := range gs {
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

func (a *Analyzer) atom(paths map[string]audit.Path, c *Cond) *guard {
	switch c.Op {
	case Literal:
		v := c.Bool
		return &guard{test: func(*audit.Event) bool { return v }, exact: true}
	case Compare:
		return a.compare(paths, c)
	case In:
		get := getter[string](paths, c.Path)
		if get == nil {
			return nil
		}
		vals := c.Values
		for _, v := range vals {
			a.probe(c.Path, v)
		}
		return &guard{test: func(ev *audit.Event) bool { return slices.Contains(vals, get(ev)) }, exact: true}
	case Contains:
		s, ok := c.Lit.(types.String)
		get := getter[[]string](paths, c.Path)
		if !ok || get == nil {
			return nil
		}
		a.probe(c.Path, string(s))
		return &guard{test: func(ev *audit.Event) bool { return slices.Contains(get(ev), string(s)) }, exact: true}
	case StringFunc:
		return a.stringFunc(paths, c)
	case Has:
		// has() of the event's optional parts.
		p, ok := paths[c.Path]
		if !ok || !p.Optional {
			return nil
		}
		a.probe(p.Path, "")
		return &guard{test: p.IsSet, exact: true}
	}
	return nil
}

// compare reads a field compared with a literal: strings for equality,
// integers for any comparison.
func (a *Analyzer) compare(paths map[string]audit.Path, c *Cond) *guard {
	switch lit := c.Lit.(type) {
	case types.String:
		get := getter[string](paths, c.Path)
		if get == nil {
			return nil
		}
		s := string(lit)
		a.probe(c.Path, s)
		switch c.Name {
		case operators.Equals:
			return &guard{test: func(ev *audit.Event) bool { return get(ev) == s }, exact: true}
		case operators.NotEquals:
			return &guard{test: func(ev *audit.Event) bool { return get(ev) != s }, exact: true}
		}
	case types.Int:
		get := getter[int64](paths, c.Path)
		if get == nil {
			return nil
		}
		n := int64(lit)
		for _, k := range []int64{n - 1, n, n + 1} {
			a.probe(c.Path, strconv.FormatInt(k, 10))
		}
		var test func(int64) bool
		switch c.Name {
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

func (a *Analyzer) stringFunc(paths map[string]audit.Path, c *Cond) *guard {
	lit, ok := c.Lit.(types.String)
	get := getter[string](paths, c.Path)
	if !ok || get == nil {
		return nil
	}
	s := string(lit)
	a.probe(c.Path, s)
	a.probe(c.Path, s+"x")
	var test func(string) bool
	switch c.Name {
	case "startsWith":
		test = func(v string) bool { return strings.HasPrefix(v, s) }
	case "endsWith":
		test = func(v string) bool { return strings.HasSuffix(v, s) }
	default:
		test = func(v string) bool { return strings.Contains(v, s) }
	}
	return &guard{test: func(ev *audit.Event) bool { return test(get(ev)) }, exact: true}
}

func (a *Analyzer) probe(path, v string) {
	if !slices.Contains(a.probes[path], v) {
		a.probes[path] = append(a.probes[path], v)
	}
}
