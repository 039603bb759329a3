package parse

import (
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// The bounds of a first-seen rule. Its state is one key per entity in the
// bucket that holds threshold windows, and each key holds at most
// MaxValues values, so these bound what a flood of distinct values costs.
const (
	// DefaultTermsForget is how long an unseen value takes to be new again.
	DefaultTermsForget = 30 * 24 * time.Hour
	// MaxTermsForget bounds forget, and learn with it.
	MaxTermsForget = 365 * 24 * time.Hour
	// DefaultTermsMaxValues bounds the values kept per entity; past it
	// the least recently seen is forgotten.
	DefaultTermsMaxValues = 1000
	// MaxTermsMaxValues bounds max_values: a key of the bucket must stay
	// well under NATS's max_payload.
	MaxTermsMaxValues = 10_000
)

// NewTerms makes a rule alert when an entity shows a value it has not shown
// before: a service account's token from a source IP it never used.
type NewTerms struct {
	// Entity are the CEL expressions naming the entity, Value those whose
	// values together must be new for it.
	Entity []string
	Value  []string
	// Learn is how long after an entity is first seen its values are
	// learned rather than alerted; Forget how long a value must go unseen
	// to be new again.
	Learn     time.Duration
	Forget    time.Duration
	MaxValues int
}

type newTermsDoc struct {
	Fields    yaml.Node `yaml:"fields"`
	By        yaml.Node `yaml:"by"`
	Learn     yaml.Node `yaml:"learn"`
	Forget    yaml.Node `yaml:"forget"`
	MaxValues yaml.Node `yaml:"max_values"`
}

// parseNewTerms reads new_terms. Without by, the last field is the value
// and the fields before it name the entity (no field before it: the rule
// as a whole is the entity); with by, by names the entity and every field
// is part of the value.
func (p *parser) parseNewTerms(n *yaml.Node, r *Rule) {
	id := r.ID
	if !p.isKind(n, yaml.MappingNode, id, "new_terms must be a mapping with fields, by, learn, forget and max_values") {
		return
	}
	var doc newTermsDoc
	p.decode(n, id, &doc)
	nt := &NewTerms{Forget: DefaultTermsForget, MaxValues: DefaultTermsMaxValues}
	ok := true
	exprs := func(v *yaml.Node, what string) ([]string, []Expr) {
		list, good := p.strList(v, id, what)
		if !good {
			ok = false
			return nil, nil
		}
		out := make([]Expr, len(list))
		for i, x := range list {
			out[i] = *p.expr(v.Content[i], x)
		}
		return list, out
	}
	var fields []string
	var fieldExprs []Expr
	if v := &doc.Fields; !given(v) {
		p.problem(n, id, "new_terms has no fields (the CEL expressions whose values must be new)")
		ok = false
	} else if fields, fieldExprs = exprs(v, "new_terms fields"); ok && len(fields) == 0 {
		p.problem(v, id, "new_terms fields must list at least one expression")
		ok = false
	}
	if v := &doc.By; given(v) {
		nt.Entity, r.TermsEntity = exprs(v, "new_terms by")
		nt.Value, r.TermsValue = fields, fieldExprs
	} else if len(fields) > 0 {
		last := len(fields) - 1
		nt.Entity, r.TermsEntity = fields[:last], fieldExprs[:last]
		nt.Value, r.TermsValue = fields[last:], fieldExprs[last:]
	}
	duration := func(v *yaml.Node, what string, minimum time.Duration) (time.Duration, bool) {
		d, err := time.ParseDuration(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || d < minimum || d > MaxTermsForget {
			p.problem(v, id, "new_terms %s %q is not a duration from %v to 8760h (365 days), like 24h or 720h", what, v.Value, minimum)
			ok = false
			return 0, false
		}
		return d, true
	}
	if v := &doc.Learn; given(v) {
		if d, good := duration(v, "learn", 0); good {
			nt.Learn = d
		}
	}
	if v := &doc.Forget; given(v) {
		if d, good := duration(v, "forget", time.Minute); good {
			nt.Forget = d
		}
	}
	if v := &doc.MaxValues; given(v) {
		if c, err := strconv.Atoi(v.Value); v.Kind != yaml.ScalarNode || err != nil || c < 1 || c > MaxTermsMaxValues {
			p.problem(v, id, "new_terms max_values %q must be a whole number from 1 to %d", v.Value, MaxTermsMaxValues)
			ok = false
		} else {
			nt.MaxValues = c
		}
	}
	if ok {
		r.NewTerms = nt
	} else {
		r.TermsEntity, r.TermsValue = nil, nil
	}
}
