package rules

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	celast "github.com/google/cel-go/common/ast"

	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules/analysis"
	"github.com/vigil-k8s/vigil/rules/compile"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// build parses rule files and compiles them into one set, or returns every
// problem they have.
func build(files []File, limits Limits, m *metrics.Metrics) (*Set, error) {
	if m == nil {
		m = metrics.New(nil)
	}
	var probs Problems
	parsed := make([]*parse.File, 0, len(files))
	for _, f := range files {
		rf := f.ReadFile
		if rf == nil {
			name := f.Name
			rf = func(string) ([]byte, error) {
				return nil, fmt.Errorf("%s cannot refer to other files", name)
			}
		}
		parsed = append(parsed, parse.Parse(parse.Source{Name: f.Name, Data: f.Data, ReadFile: rf}, &probs))
	}
	b := &builder{probs: &probs, limits: limits.WithDefaults()}
	set := b.build(parsed, m.LimitExceeded.WithLabelValues("max_object_bytes"))
	if err := probs.Err(); err != nil {
		return nil, err
	}
	set.hash = hashFiles(files)
	set.warnings = probs.Warnings()
	return set, nil
}

// builder puts a rule set together from parsed files: lists and macros
// shared by all of them, every expression checked and planned in one
// environment, each condition read for the prefilter.
type builder struct {
	probs  *Problems
	limits Limits
}

func (b *builder) problemNode(f *parse.File, n *yaml.Node, ruleID, format string, args ...any) {
	b.probs.Add(Problem{File: f.Name, Line: n.Line, Col: n.Column, RuleID: ruleID, Message: fmt.Sprintf(format, args...)})
}

func (b *builder) build(files []*parse.File, tooLarge prometheus.Counter) *Set {
	set := &Set{}

	lists := map[string][]string{}
	listAt := map[string]parse.List{}
	var macroDefs []parse.Macro
	macroAt := map[string]parse.Macro{}
	for _, f := range files {
		for _, l := range f.Lists {
			if prev, dup := listAt[l.Name]; dup {
				b.problemNode(f, l.Node, "", "list %q is already defined at %s:%d", l.Name, prev.File.Name, prev.Node.Line)
				continue
			}
			listAt[l.Name] = l
			lists[l.Name] = l.Values
		}
		for _, m := range f.Macros {
			if prev, dup := macroAt[m.Name]; dup {
				b.problemNode(f, m.Expr.Node, "", "macro %q is already defined at %s:%d", m.Name, prev.Expr.File.Name, prev.Expr.Node.Line)
				continue
			}
			macroAt[m.Name] = m
			macroDefs = append(macroDefs, m)
		}
	}
	appends := map[string][]parse.Expr{} // by macro, in load order
	for _, o := range overrides(files) {
		switch o.Kind {
		case parse.OverrideList:
			if known(b, o, lists) {
				lists[o.Name] = append(slices.Clone(lists[o.Name]), o.Values...)
			}
		case parse.OverrideMacro:
			if known(b, o, macroAt) {
				appends[o.Name] = append(appends[o.Name], *o.Append)
			}
		}
	}
	macroNames := make([]string, len(macroDefs))
	for i, m := range macroDefs {
		macroNames[i] = m.Name
	}
	env, err := compile.NewEnv(lists, macroNames)
	if err != nil {
		// The environment does not depend on rule text beyond names, so
		// this is a defect, not a rule problem; report it all the same.
		b.probs.Add(Problem{File: "(rules)", Message: err.Error()})
		return set
	}

	set.macros = make([]cel.Program, len(macroDefs))
	macroASTs := map[string]celast.Expr{}
	for i, m := range macroDefs {
		ast := b.macro(env, m, appends[m.Name])
		if ast == nil {
			continue
		}
		macroASTs[m.Name] = ast.NativeRep().Expr()
		if len(appends[m.Name]) == 0 {
			// The positions of a macro with appends are not its text's.
			warnUnguardedReads(m.Expr, "", ast, b.probs)
		}
		set.macros[i] = env.Program(m.Expr, "", ast, b.limits.Cost, b.probs)
	}
	an := analysis.New(lists, macroASTs)
	refs := make([][]string, len(macroDefs))
	for i, m := range macroDefs {
		refs[i] = an.MacroRefs(m.Name)
	}
	compile.CheckCycles(macroDefs, refs, b.probs)
	set.scope = env.Scope(set.macros, b.limits.ObjectBytes, tooLarge)

	defs, ids := b.ruleDefs(files)
	for _, d := range defs {
		r := &Rule{Meta: d.Meta, File: d.file.Name, Line: d.Node.Line}
		cond := d.Condition
		if d.Sequence != nil {
			cond = b.sequence(env, d, r)
		}
		if cond != nil {
			if ast := env.Check(*cond, r.ID, types.BoolType, "condition", b.probs); ast != nil {
				r.cond = env.Program(*cond, r.ID, ast, b.limits.Cost, b.probs)
				r.guard, r.needs = an.Condition(ast.NativeRep().Expr())
				r.resources = r.needs.Resources
				if d.Sequence == nil {
					// A sequence's steps were read one by one, at
					// their own positions.
					warnUnguardedReads(*cond, r.ID, ast, b.probs)
				}
			}
		}
		if d.Output != nil {
			if ast := env.Check(*d.Output, r.ID, types.StringType, "output", b.probs); ast != nil {
				r.output = env.Program(*d.Output, r.ID, ast, b.limits.Cost, b.probs)
			}
		}
		// The other expressions only run once the condition held, so
		// they do not change what the prefilter may skip; what bodies
		// they read, the activation must decode all the same.
		other := func(x parse.Expr, want *types.Type, what string) cel.Program {
			ast := env.Check(x, r.ID, want, what, b.probs)
			if ast == nil {
				return nil
			}
			an.Bodies(&r.needs, ast.NativeRep().Expr())
			// An exception or group key that errs keeps the alert, but
			// loses what it was written for.
			warnUnguardedReads(x, r.ID, ast, b.probs)
			return env.Program(x, r.ID, ast, b.limits.Cost, b.probs)
		}
		for _, x := range d.By {
			if p := other(x, nil, "threshold by"); p != nil {
				r.by = append(r.by, p)
			}
		}
		if d.Distinct != nil {
			r.distinct = other(*d.Distinct, nil, "threshold distinct")
		}
		named := map[string]bool{}
		for _, e := range d.Exceptions {
			if named[e.Name] {
				b.problemNode(e.When.File, e.Node, r.ID, "exception %q is given twice for this rule", e.Name)
				continue
			}
			named[e.Name] = true
			if p := other(*e.When, types.BoolType, "exception "+e.Name); p != nil {
				r.exceptions = append(r.exceptions, exception{name: e.Name, when: p})
			}
		}
		for _, x := range d.SuppressBy {
			if p := other(x, nil, "suppress by"); p != nil {
				r.suppressBy = append(r.suppressBy, p)
			}
		}
		for _, x := range d.SequenceBy {
			if p := other(x, nil, "sequence by"); p != nil {
				r.sequenceBy = append(r.sequenceBy, p)
			}
		}
		if d.NewTerms != nil {
			for _, x := range d.TermsEntity {
				if p := other(x, nil, "new_terms field"); p != nil {
					r.termsEntity = append(r.termsEntity, p)
				}
			}
			for _, x := range d.TermsValue {
				if p := other(x, nil, "new_terms field"); p != nil {
					r.termsValue = append(r.termsValue, p)
				}
			}
			r.termsTag = termsTag(d)
		}
		set.rules = append(set.rules, r)
	}
	set.index = buildIndex(set.rules)
	set.probes = an.Probes()
	for _, f := range files {
		for _, t := range f.Tests {
			if t.Case.Rule != "" {
				if _, ok := ids[t.Case.Rule]; !ok {
					msg := fmt.Sprintf("test %q names unknown rule %q", t.Case.Name, t.Case.Rule)
					if s := parse.Suggest(t.Case.Rule, slices.Sorted(maps.Keys(ids))); s != "" {
						msg += fmt.Sprintf(", did you mean %q?", s)
					}
					b.problemNode(f, t.Node, "", "%s", msg)
				}
			}
			set.tests = append(set.tests, t.Case)
		}
	}
	return set
}

// overrides are the overrides of every file, in load order.
func overrides(files []*parse.File) []*parse.Override {
	var out []*parse.Override
	for _, f := range files {
		for i := range f.Overrides {
			out = append(out, &f.Overrides[i])
		}
	}
	return out
}

// known reports whether an override names something defined, and reports
// it otherwise, with the closest name.
func known[V any](b *builder, o *parse.Override, defined map[string]V) bool {
	if _, ok := defined[o.Name]; ok {
		return true
	}
	msg := fmt.Sprintf("override of unknown %s %q", o.Kind, o.Name)
	if s := parse.Suggest(o.Name, slices.Sorted(maps.Keys(defined))); s != "" {
		msg += fmt.Sprintf(", did you mean %q?", s)
	}
	b.problemNode(o.File, o.NameNode, "", "%s", msg)
	return false
}

// macro checks a macro and what overrides append to it. Each part is
// checked on its own, so that problems are placed in the file that wrote
// them; the macro is then their disjunction.
func (b *builder) macro(env *compile.Env, m parse.Macro, appends []parse.Expr) *cel.Ast {
	ast := env.Check(m.Expr, "", types.BoolType, "macro "+m.Name, b.probs)
	if len(appends) == 0 {
		return ast
	}
	text := "(" + m.Expr.Text + ")"
	for _, x := range appends {
		if env.Check(x, "", types.BoolType, "append to macro "+m.Name, b.probs) == nil {
			ast = nil
		}
		text += " || (" + x.Text + ")"
	}
	if ast == nil {
		return nil
	}
	m.Expr.Text = text
	return env.Check(m.Expr, "", types.BoolType, "macro "+m.Name, b.probs)
}

// sequence compiles a sequence rule's steps and returns the condition that
// lets an event through to them: that of the rule, if it has one, and that
// of any step. The prefilter and guards are read from it, so they let
// through what any step may match. Each step is checked on its own, so
// that its problems are placed at its text; nil when one has a problem.
func (b *builder) sequence(env *compile.Env, d *ruleDef, r *Rule) *parse.Expr {
	var alts []string
	ok := true
	for _, st := range d.Steps {
		ast := env.Check(st.Condition, r.ID, types.BoolType, "sequence step "+st.Name, b.probs)
		if ast == nil {
			ok = false
			continue
		}
		warnUnguardedReads(st.Condition, r.ID, ast, b.probs)
		r.steps = append(r.steps, env.Program(st.Condition, r.ID, ast, b.limits.Cost, b.probs))
		alts = append(alts, "("+st.Condition.Text+")")
	}
	if !ok || len(d.Steps) == 0 {
		return nil
	}
	x := d.Steps[0].Condition
	x.Text = strings.Join(alts, " || ")
	if d.Condition != nil {
		x = *d.Condition
		x.Text = "(" + d.Condition.Text + ") && (" + strings.Join(alts, " || ") + ")"
	}
	return &x
}

// ruleDef is a rule as the overrides left it, with the file that
// defined it.
type ruleDef struct {
	parse.Rule
	file *parse.File
}

// ruleDefs collects the rules of every file, reporting duplicate ids, and
// applies the rule overrides to them in load order. ids are the rules by
// id.
func (b *builder) ruleDefs(files []*parse.File) ([]*ruleDef, map[string]*ruleDef) {
	var defs []*ruleDef
	ids := map[string]*ruleDef{}
	for _, f := range files {
		for _, r := range f.Rules {
			d := &ruleDef{Rule: r, file: f}
			if r.ID != "" {
				if prev, dup := ids[r.ID]; dup {
					b.problemNode(f, r.Node, r.ID, "duplicate rule id, first defined at %s:%d; to change a rule defined elsewhere, use overrides", prev.file.Name, prev.Node.Line)
				} else {
					ids[r.ID] = d
				}
			}
			defs = append(defs, d)
		}
	}
	for _, o := range overrides(files) {
		if o.Kind != parse.OverrideRule || !known(b, o, ids) {
			continue
		}
		d := ids[o.Name]
		o.Apply(&d.Rule)
		if d.Suppress != nil && d.Threshold != nil {
			b.problemNode(o.File, o.Node, o.Name, "suppress cannot be combined with threshold: a threshold already alerts once per window")
		}
		if d.Suppress != nil && d.NewTerms != nil {
			b.problemNode(o.File, o.Node, o.Name, "suppress cannot be combined with new_terms: a new value alerts once until it is forgotten")
		}
	}
	return defs, ids
}
