package rules

import (
	"slices"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// evalUnfiltered is what Eval must return, computed the slow way: every
// enabled rule of the event's stage is evaluated, with neither the
// resource index nor the verb check of the prefilter. It returns the ids of
// the matching rules in file order.
func (s *Set) evalUnfiltered(ev *audit.Event) []string {
	a := newActivation(s, ev)
	var ids []string
	for _, r := range s.rules {
		if !r.Enabled || !slices.Contains(r.Stages, ev.Stage) {
			continue
		}
		ok, err := evalBool(r.cond, a)
		if err != nil || !ok {
			continue
		}
		if r.Threshold != nil {
			// Eval drops a match whose group key fails; so does this.
			var m Match
			if thresholdKey(r, a, &m) != nil {
				continue
			}
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// guarded reports whether the prefilter holds a guard for the rule.
func (r *Rule) guarded() bool { return r.guard != nil }
