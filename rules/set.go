package rules

import (
	"slices"
	"sync"

	"github.com/google/cel-go/cel"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/rules/compile"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// Rule is one compiled detection rule.
type Rule struct {
	// Meta is what the file says of the rule: ID, Title, Description,
	// Severity, Tags, Stages, Enabled, Threshold.
	parse.Meta
	// File and Line locate the rule's definition.
	File string
	Line int

	cond   cel.Program
	output cel.Program // nil: the default output
	// resources is what the condition demands of event.objectRef.resource
	// (nil: anything), and guard what Go can decide of it (nil: nothing),
	// for the prefilter.
	resources []string
	guard     func(*audit.Event) bool
	needs     Needs
	by        []cel.Program
	distinct  cel.Program
	// exceptions run, in order, once the condition held.
	exceptions []exception
	suppressBy []cel.Program
	// termsEntity and termsValue compute a first-seen rule's entity and
	// value; termsTag tells its definition apart, so that a changed rule
	// learns afresh instead of reading what the old one learned.
	termsEntity []cel.Program
	termsValue  []cel.Program
	termsTag    string
	// steps are a sequence rule's step conditions, run once its
	// condition (the rule's and any step's) held.
	steps      []cel.Program
	sequenceBy []cel.Program
}

// exception is a compiled exception of a rule.
type exception struct {
	name string
	when cel.Program
}

// Exceptions names the rule's exceptions, its own and those overrides
// appended, in the order they are evaluated.
func (r *Rule) Exceptions() []string {
	out := make([]string, len(r.exceptions))
	for i, e := range r.exceptions {
		out[i] = e.name
	}
	return out
}

// Needs returns what the rule's condition demands of an event.
func (r *Rule) Needs() Needs { return r.needs.Clone() }

// Set is a loaded, compiled rule set. It is immutable and safe for
// concurrent use.
type Set struct {
	rules  []*Rule
	index  *index
	tests  []*TestCase
	macros []cel.Program
	// scope is what evaluations share: the types, macros and body limit.
	scope *compile.Scope
	hash  string
	// probes are the values the rules' guards compare each event field
	// with, by field path: what tests move events through.
	probes map[string][]string
	pool   sync.Pool // of *compile.Activation
	// warnings are the problems that did not reject the load.
	warnings []Problem
}

// Rules returns every rule, enabled and disabled, in file order.
func (s *Set) Rules() []*Rule { return slices.Clone(s.rules) }

// Rule returns the rule with the given id.
func (s *Set) Rule(id string) (*Rule, bool) {
	for _, r := range s.rules {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// Tests returns the rule tests of every loaded file.
func (s *Set) Tests() []*TestCase { return slices.Clone(s.tests) }

// Hash is a stable version of the rule set: the same rule files, in any
// order and from any place, give the same hash.
func (s *Set) Hash() string { return s.hash }
