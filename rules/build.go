package rules

import (
	"fmt"
	"maps"
	"slices"

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
		ast := env.Check(m.Expr, "", types.BoolType, "macro "+m.Name, b.probs)
		if ast == nil {
			continue
		}
		macroASTs[m.Name] = ast.NativeRep().Expr()
		set.macros[i] = env.Program(m.Expr, "", ast, b.limits.Cost, b.probs)
	}
	an := analysis.New(lists, macroASTs)
	refs := make([][]string, len(macroDefs))
	for i, m := range macroDefs {
		refs[i] = an.MacroRefs(m.Name)
	}
	compile.CheckCycles(macroDefs, refs, b.probs)
	set.scope = env.Scope(set.macros, b.limits.ObjectBytes, tooLarge)

	ids := map[string]*Rule{}
	for _, f := range files {
		for _, d := range f.Rules {
			r := &Rule{Meta: d.Meta, File: f.Name, Line: d.Node.Line}
			if r.ID != "" {
				if prev, dup := ids[r.ID]; dup {
					b.problemNode(f, d.Node, r.ID, "duplicate rule id, first defined at %s:%d", prev.File, prev.Line)
				} else {
					ids[r.ID] = r
				}
			}
			if d.Condition != nil {
				if ast := env.Check(*d.Condition, r.ID, types.BoolType, "condition", b.probs); ast != nil {
					r.cond = env.Program(*d.Condition, r.ID, ast, b.limits.Cost, b.probs)
					r.guard, r.needs = an.Condition(ast.NativeRep().Expr())
					r.resources = r.needs.Resources
				}
			}
			if d.Output != nil {
				if ast := env.Check(*d.Output, r.ID, types.StringType, "output", b.probs); ast != nil {
					r.output = env.Program(*d.Output, r.ID, ast, b.limits.Cost, b.probs)
				}
			}
			for _, x := range d.By {
				if ast := env.Check(x, r.ID, nil, "threshold by", b.probs); ast != nil {
					r.by = append(r.by, env.Program(x, r.ID, ast, b.limits.Cost, b.probs))
					an.Bodies(&r.needs, ast.NativeRep().Expr())
				}
			}
			if d.Distinct != nil {
				if ast := env.Check(*d.Distinct, r.ID, nil, "threshold distinct", b.probs); ast != nil {
					r.distinct = env.Program(*d.Distinct, r.ID, ast, b.limits.Cost, b.probs)
					an.Bodies(&r.needs, ast.NativeRep().Expr())
				}
			}
			set.rules = append(set.rules, r)
		}
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
