package parse

import (
	"time"

	"gopkg.in/yaml.v3"
)

// The bounds of a sequence rule: its state per group holds at most
// MaxSequenceSteps steps' events for at most within, so these bound it.
const (
	MaxSequenceSteps  = 5
	MaxSequenceWithin = 24 * time.Hour
)

// Sequence makes a rule alert when events of one group match its steps in
// order of event time, the last within Within of the first.
type Sequence struct {
	By     []string // CEL expressions forming the group key
	Within time.Duration
	Steps  []string // step names, in order
}

// Step is one step of a sequence: a name and a condition.
type Step struct {
	Name      string
	Condition Expr
}

type (
	sequenceDoc struct {
		By     yaml.Node `yaml:"by"`
		Within yaml.Node `yaml:"within"`
		Steps  yaml.Node `yaml:"steps"`
	}
	stepDoc struct {
		Name      yaml.Node `yaml:"name"`
		Condition yaml.Node `yaml:"condition"`
	}
)

// parseSequence reads sequence: its group, its span and its steps.
func (p *parser) parseSequence(n *yaml.Node, r *Rule) {
	id := r.ID
	if !p.isKind(n, yaml.MappingNode, id, "sequence must be a mapping with by, within and steps") {
		return
	}
	var doc sequenceDoc
	p.decode(n, id, &doc)
	s := &Sequence{}
	var by []Expr
	var steps []Step
	ok := true
	if v := &doc.Within; !given(v) {
		p.problem(n, id, "sequence has no within (how long from the first step to the last, like 10m)")
		ok = false
	} else if d, err := time.ParseDuration(v.Value); v.Kind != yaml.ScalarNode || err != nil || d <= 0 || d > MaxSequenceWithin {
		p.problem(v, id, "sequence within %q is not a positive duration up to 24h, like 5m or 1h", v.Value)
		ok = false
	} else {
		s.Within = d
	}
	if v := &doc.By; given(v) {
		if list, good := p.strList(v, id, "sequence by"); !good {
			ok = false
		} else {
			s.By = list
			for i, x := range list {
				by = append(by, *p.expr(v.Content[i], x))
			}
		}
	}
	v := &doc.Steps
	switch {
	case !given(v):
		p.problem(n, id, "sequence has no steps")
		ok = false
	case !p.isKind(v, yaml.SequenceNode, id, "sequence steps must be a list of {name, condition}"):
		ok = false
	case len(v.Content) < 2 || len(v.Content) > MaxSequenceSteps:
		p.problem(v, id, "sequence has %d steps; it takes 2 to %d", len(v.Content), MaxSequenceSteps)
		ok = false
	default:
		names := map[string]bool{}
		for _, sn := range v.Content {
			if !p.isKind(sn, yaml.MappingNode, id, "each sequence step must be a mapping with name and condition") {
				ok = false
				continue
			}
			var sd stepDoc
			p.decode(sn, id, &sd)
			st := Step{}
			if nv := &sd.Name; !given(nv) {
				p.problem(sn, id, "sequence step has no name")
				ok = false
			} else if name, good := p.str(nv, id, "sequence step name"); good {
				if !kebabCase.MatchString(name) {
					p.problem(nv, id, "sequence step name %q must be kebab-case", name)
					ok = false
				} else if names[name] {
					p.problem(nv, id, "sequence step %q is given twice", name)
					ok = false
				}
				names[name] = true
				st.Name = name
			} else {
				ok = false
			}
			if cv := &sd.Condition; !given(cv) {
				p.problem(sn, id, "sequence step has no condition")
				ok = false
			} else if text, good := p.str(cv, id, "sequence step condition"); good {
				st.Condition = *p.expr(cv, text)
			} else {
				ok = false
			}
			steps = append(steps, st)
			s.Steps = append(s.Steps, st.Name)
		}
	}
	if ok {
		r.Sequence, r.SequenceBy, r.Steps = s, by, steps
	}
}
