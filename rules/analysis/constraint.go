package analysis

import (
	"slices"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// Most audit events (lease renewals, status updates, watches) can match no
// rule at all. The prefilter reads each condition for what it demands of
// event.objectRef.resource, so that an event is only shown to rules that
// could match it; Needs reads the other fields an audit policy selects on
// the same way.

// constraint is the set of values a field must have for a condition to hold;
// nil means any value.
type constraint []string

func (c constraint) and(o constraint) constraint {
	switch {
	case c == nil:
		return o
	case o == nil:
		return c
	}
	out := constraint{}
	for _, v := range c {
		if slices.Contains(o, v) {
			out = append(out, v)
		}
	}
	return out
}

func (c constraint) or(o constraint) constraint {
	if c == nil || o == nil {
		return nil
	}
	out := slices.Clone(c)
	for _, v := range o {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// constraintFold derives the constraint on the event field at path: the
// field equal to a string or in a list of them. Anything else, negations
// included, constrains nothing.
func constraintFold(path string) Fold[constraint] {
	return Fold[constraint]{
		Atom: func(c *Cond) constraint {
			if c.Path != path {
				return nil
			}
			switch c.Op {
			case Compare:
				if s, ok := c.Lit.(types.String); ok && c.Name == operators.Equals {
					return constraint{string(s)}
				}
			case In:
				return slices.Clone(c.Values)
			}
			return nil
		},
		And: func(xs []constraint) constraint {
			var c constraint
			for _, x := range xs {
				c = c.and(x)
			}
			return c
		},
		Or: func(xs []constraint) constraint {
			if len(xs) == 0 {
				return nil
			}
			c := xs[0]
			for _, x := range xs[1:] {
				c = c.or(x)
			}
			return c
		},
		Not: func(constraint) constraint { return nil },
	}
}
