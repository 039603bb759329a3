package parse

import (
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// MaxSuppressFor bounds a suppression window: its state is kept in the
// thresholds bucket, whose entries live a day.
const MaxSuppressFor = 24 * time.Hour

// Kinds of definition an override changes.
const (
	OverrideRule  = "rule"
	OverrideList  = "list"
	OverrideMacro = "macro"
)

// Override changes a rule, list or macro that may be defined in another
// file, above all the default pack, so that it can be tuned without being
// copied.
type Override struct {
	// Kind is OverrideRule, OverrideList or OverrideMacro, and Name what
	// it names.
	Kind string
	Name string
	// Node is the override's mapping and NameNode the value naming what
	// it changes, where an unknown name is reported.
	Node, NameNode *yaml.Node
	File           *File

	// Exceptions are appended to the rule's own.
	Exceptions []Exception
	// Values are appended to the list.
	Values []string
	// Append is or-ed to the macro.
	Append *Expr

	// set replaces the fields of the rule the override gives.
	set []func(*Rule)
}

// Apply changes r as the override says: its exceptions are appended, the
// other fields it gives replace the rule's.
func (o *Override) Apply(r *Rule) {
	for _, f := range o.set {
		f(r)
	}
	r.Exceptions = append(slices.Clone(r.Exceptions), o.Exceptions...)
}

type overrideDoc struct {
	Rule        yaml.Node `yaml:"rule"`
	List        yaml.Node `yaml:"list"`
	Macro       yaml.Node `yaml:"macro"`
	Append      yaml.Node `yaml:"append"`
	Exceptions  yaml.Node `yaml:"exceptions"`
	Severity    yaml.Node `yaml:"severity"`
	Enabled     yaml.Node `yaml:"enabled"`
	Title       yaml.Node `yaml:"title"`
	Description yaml.Node `yaml:"description"`
	RunbookURL  yaml.Node `yaml:"runbook_url"`
	Tags        yaml.Node `yaml:"tags"`
	Output      yaml.Node `yaml:"output"`
	Stages      yaml.Node `yaml:"stages"`
	Suppress    yaml.Node `yaml:"suppress"`
}

// ruleFields are the keys of an override that only a rule override takes.
func (d *overrideDoc) ruleFields() []*yaml.Node {
	return []*yaml.Node{&d.Exceptions, &d.Severity, &d.Enabled, &d.Title, &d.Description, &d.RunbookURL, &d.Tags, &d.Output, &d.Stages, &d.Suppress}
}

func (p *parser) parseOverride(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "each override must be a mapping naming a rule, list or macro") {
		return
	}
	var doc overrideDoc
	p.decode(n, "", &doc)
	o := Override{Node: n, File: p.f}
	for _, k := range []struct {
		kind string
		node *yaml.Node
	}{{OverrideRule, &doc.Rule}, {OverrideList, &doc.List}, {OverrideMacro, &doc.Macro}} {
		if !given(k.node) {
			continue
		}
		if o.Kind != "" {
			p.problem(k.node, "", "an override names one of rule, list or macro, not both %s and %s", o.Kind, k.kind)
			return
		}
		name, ok := p.str(k.node, "", "override "+k.kind)
		if !ok {
			return
		}
		o.Kind, o.Name, o.NameNode = k.kind, name, k.node
	}
	if o.Kind == "" {
		p.problem(n, "", "an override must name the rule, list or macro it changes (rule:, list: or macro:)")
		return
	}
	id := ""
	if o.Kind == OverrideRule {
		id = o.Name
	}
	ok := true
	if o.Kind != OverrideRule {
		for _, f := range doc.ruleFields() {
			if given(f) {
				p.problem(f, "", "an override of a %s takes only append; fields such as this one change rules", o.Kind)
				ok = false
			}
		}
		if !given(&doc.Append) {
			p.problem(n, "", "override of %s %q has no append", o.Kind, o.Name)
			return
		}
	}
	switch o.Kind {
	case OverrideList:
		vals, good := p.strList(&doc.Append, "", "append to list "+o.Name)
		ok = ok && good
		o.Values = vals
	case OverrideMacro:
		text, good := p.str(&doc.Append, "", "append to macro "+o.Name)
		ok = ok && good
		o.Append = p.expr(&doc.Append, text)
	case OverrideRule:
		if given(&doc.Append) {
			p.problem(&doc.Append, id, "append changes lists and macros; a rule override gives exceptions to append and fields to replace")
			ok = false
		}
		changes := p.ruleOverride(&doc, id, &o)
		if changes == 0 && ok {
			p.problem(n, id, "override of rule %q changes nothing (give exceptions or fields to replace)", o.Name)
			ok = false
		}
	}
	if ok {
		p.f.Overrides = append(p.f.Overrides, o)
	}
}

// ruleOverride reads the fields a rule override replaces and the
// exceptions it appends, and returns how many it gave.
func (p *parser) ruleOverride(doc *overrideDoc, id string, o *Override) int {
	n := 0
	replace := func(f func(*Rule)) {
		o.set = append(o.set, f)
		n++
	}
	if v := &doc.Severity; given(v) {
		if s, _, valid := p.severity(v, id); valid {
			replace(func(r *Rule) { r.Severity = s })
		}
	}
	if v := &doc.Enabled; given(v) {
		if b, ok := p.enabled(v, id); ok {
			replace(func(r *Rule) { r.Enabled = b })
		}
	}
	if v := &doc.Title; given(v) {
		if s, ok := p.str(v, id, "title"); ok {
			replace(func(r *Rule) { r.Title = s })
		}
	}
	if v := &doc.Description; given(v) {
		if s, ok := p.str(v, id, "description"); ok {
			replace(func(r *Rule) { r.Description = s })
		}
	}
	if v := &doc.RunbookURL; given(v) {
		if s, ok := p.runbookURL(v, id); ok {
			replace(func(r *Rule) { r.RunbookURL = s })
		}
	}
	if v := &doc.Tags; given(v) {
		if tags, ok := p.strList(v, id, "tags"); ok {
			replace(func(r *Rule) { r.Tags = tags })
		}
	}
	if v := &doc.Output; given(v) {
		if s, ok := p.str(v, id, "output"); ok {
			x := p.expr(v, s)
			replace(func(r *Rule) { r.Output = x })
		}
	}
	if v := &doc.Stages; given(v) {
		if stages, ok := p.stages(v, id); ok {
			replace(func(r *Rule) { r.Stages = stages })
		}
	}
	if v := &doc.Suppress; given(v) {
		if s, by := p.parseSuppress(v, id); s != nil {
			replace(func(r *Rule) { r.Suppress, r.SuppressBy = s, by })
		}
	}
	if v := &doc.Exceptions; given(v) {
		o.Exceptions = p.parseExceptions(v, id)
		n += len(o.Exceptions)
	}
	return n
}

// severity reads a severity: it is a string (ok) and one of the five
// (valid); each problem is reported.
func (p *parser) severity(v *yaml.Node, id string) (sev string, ok, valid bool) {
	sev, ok = p.str(v, id, "severity")
	if !ok {
		return "", false, false
	}
	if !alert.ValidSeverity(sev) {
		p.problem(v, id, "severity %q is not one of info, low, medium, high, critical", sev)
		return sev, true, false
	}
	return sev, true, true
}

// enabled reads true or false.
func (p *parser) enabled(v *yaml.Node, id string) (bool, bool) {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
		p.problem(v, id, "enabled must be true or false")
		return false, false
	}
	return b, true
}

// stages reads a list of audit stages: nil when it is not a list of
// strings, and ok false when a stage is unknown (each reported).
func (p *parser) stages(v *yaml.Node, id string) ([]string, bool) {
	stages, ok := p.strList(v, id, "stages")
	if !ok {
		return nil, false
	}
	for i, s := range stages {
		if !slices.Contains(validStages, s) {
			p.problem(v.Content[i], id, "stage %q is not one of %s", s, strings.Join(validStages, ", "))
			ok = false
		}
	}
	return stages, ok
}

// parseExceptions reads a rule's exceptions, or those an override
// appends. Names must be unique in the rule once overrides are
// applied, which the compiler checks.
func (p *parser) parseExceptions(n *yaml.Node, id string) []Exception {
	if !p.isKind(n, yaml.SequenceNode, id, "exceptions must be a list of {name, when}") {
		return nil
	}
	var out []Exception
	for _, en := range n.Content {
		if !p.isKind(en, yaml.MappingNode, id, "each exception must be a mapping with name and when") {
			continue
		}
		var doc exceptionDoc
		p.decode(en, id, &doc)
		e := Exception{Node: en}
		ok := true
		if v := &doc.Name; !given(v) {
			p.problem(en, id, "exception has no name")
			ok = false
		} else if s, good := p.str(v, id, "exception name"); !good {
			ok = false
		} else if !kebabCase.MatchString(s) {
			p.problem(v, id, "exception name %q must be kebab-case (lowercase letters, digits and single dashes)", s)
			ok = false
		} else {
			e.Name = s
		}
		if v := &doc.When; !given(v) {
			p.problem(en, id, "exception %q has no when (a CEL condition)", e.Name)
			ok = false
		} else if s, good := p.str(v, id, "exception when"); good {
			e.When = p.expr(v, s)
		} else {
			ok = false
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// parseSuppress reads a suppression window: its group key expressions and
// its length. It returns nil when the window is not valid.
func (p *parser) parseSuppress(n *yaml.Node, id string) (*Suppress, []Expr) {
	if !p.isKind(n, yaml.MappingNode, id, "suppress must be a mapping with by and for") {
		return nil, nil
	}
	var doc suppressDoc
	p.decode(n, id, &doc)
	s := &Suppress{}
	var exprs []Expr
	ok := true
	if v := &doc.For; !given(v) {
		p.problem(n, id, "suppress has no for (how long to hold back a group's matches, like 10m)")
		ok = false
	} else if d, err := time.ParseDuration(v.Value); v.Kind != yaml.ScalarNode || err != nil || d <= 0 || d > MaxSuppressFor {
		p.problem(v, id, "suppress for %q is not a positive duration up to 24h, like 30s, 10m or 1h", v.Value)
		ok = false
	} else {
		s.For = d
	}
	if v := &doc.By; given(v) {
		if by, good := p.strList(v, id, "suppress by"); !good {
			ok = false
		} else {
			s.By = by
			for i, x := range by {
				exprs = append(exprs, *p.expr(v.Content[i], x))
			}
		}
	}
	if !ok {
		return nil, nil
	}
	return s, exprs
}
