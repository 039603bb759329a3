package analysis

import (
	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Fold is one analysis of conditions: what each atom means, and how &&, ||
// and ! combine the meanings of their operands. Unknown is the meaning of
// what the walker could not read, and of a macro that did not compile or
// refers to itself (compilation rejects those anyway). Operands are folded
// before the operator, all of them.
type Fold[T any] struct {
	Atom    func(c *Cond) T
	And, Or func(xs []T) T
	Not     func(x T) T
	Unknown T
}

// folder applies one fold to conditions and to the macros they use, each
// macro once.
type folder[T any] struct {
	Fold[T]
	macros func(name string) (*Expr, bool)
	memo   map[string]T
}

func newFolder[T any](f Fold[T], macros func(string) (*Expr, bool)) *folder[T] {
	return &folder[T]{Fold: f, macros: macros, memo: map[string]T{}}
}

func (f *folder[T]) fold(c *Cond) T {
	switch c.Op {
	case Unknown:
		return f.Unknown
	case And, Or:
		xs := make([]T, len(c.Args))
		for i, a := range c.Args {
			xs[i] = f.fold(a)
		}
		if c.Op == And {
			return f.And(xs)
		}
		return f.Or(xs)
	case Not:
		return f.Not(f.fold(c.Args[0]))
	case Macro:
		return f.macro(c.Name)
	}
	return f.Atom(c)
}

func (f *folder[T]) macro(name string) T {
	if v, ok := f.memo[name]; ok {
		return v
	}
	f.memo[name] = f.Unknown
	x, ok := f.macros(name)
	if !ok {
		return f.Unknown
	}
	v := f.fold(x.Cond)
	f.memo[name] = v
	return v
}

// Analyzer reads the conditions of one rule set, with its lists and the
// macros that compiled, each macro read once.
type Analyzer struct {
	lists  map[string][]string
	macros map[string]celast.Expr
	read   map[string]*Expr
	guards *folder[*guard]
	// probes holds, per field path, the literal values guards compare it
	// with: the values worth moving an event through to test them.
	probes map[string][]string
	needs  []*folder[constraint]
	bodies map[string]bodyReads
	// schema holds the event's value paths, where reads into a body or a
	// map stop.
	schema map[string]bool
	// userGuards and userLits read what a condition demands of the user.
	userGuards *folder[*guard]
	userLits   *folder[*Users]
}

// New returns the analyzer of a rule set with these lists and checked
// macros.
func New(lists map[string][]string, macros map[string]celast.Expr) *Analyzer {
	a := &Analyzer{lists: lists, macros: macros, read: map[string]*Expr{}, probes: map[string][]string{},
		bodies: map[string]bodyReads{}, schema: map[string]bool{}}
	for _, p := range audit.Paths() {
		a.schema[p.Path] = true
	}
	a.guards = newFolder(a.guardFold(), a.macro)
	a.userGuards = newFolder(a.userGuardFold(), a.macro)
	a.userLits = newFolder(userLiteralsFold(), a.macro)
	for _, path := range needsPaths {
		a.needs = append(a.needs, newFolder(constraintFold(path), a.macro))
	}
	return a
}

// macro is what the walker reads of a macro, read the first time it is
// asked for.
func (a *Analyzer) macro(name string) (*Expr, bool) {
	if x, ok := a.read[name]; ok {
		return x, true
	}
	e, ok := a.macros[name]
	if !ok {
		return nil, false
	}
	x := Read(e, a.lists)
	a.read[name] = x
	return x, true
}

// Probes are, by field path, the literal values guards compare events
// with.
func (a *Analyzer) Probes() map[string][]string { return a.probes }

// MacroRefs lists the macros the named macro refers to, in order; nil for
// one that did not compile.
func (a *Analyzer) MacroRefs(name string) []string {
	if x, ok := a.macro(name); ok {
		return x.Macros
	}
	return nil
}
