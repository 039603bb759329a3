package rules

import (
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// MaxSequenceEvents bounds the events a sequence keeps per step and group,
// the latest first, and the firings it remembers.
const MaxSequenceEvents = 32

// SequenceState is what one group of a sequence rule has matched: per
// step, the events that matched it within the sequence's span of the
// group's newest event, and the sequences that alerted. Plain data like
// WindowState, kept in the same store.
type SequenceState struct {
	Steps [][]alert.Member `json:"steps"`
	Fired []SequenceFiring `json:"fired,omitempty"`
}

// SequenceFiring is a sequence that alerted: its events, one per step, in
// order. The first step's request identifies it.
type SequenceFiring struct {
	Events []alert.Member `json:"events"`
}

// Anchor is the request of the sequence's first step.
func (f SequenceFiring) Anchor() string { return f.Events[0].AuditID }

// Elapsed is the time from the first step to the last.
func (f SequenceFiring) Elapsed() time.Duration {
	return f.Events[len(f.Events)-1].Time.Sub(f.Events[0].Time)
}

// Observe adds an event that matched the given steps (indexes into
// s.Steps) and returns the sequences it completes: each first-step event
// whose later steps are now matched, in order of event time and each by
// another request, the last within s.Within of the first. A first-step
// event alerts once, with the earliest events that complete it; a request
// seen again (a redelivery, a later stage) adds nothing, and one that was
// part of a sequence that alerted gives its alert again.
//
// Events may arrive out of order: one is matched as long as it is no older
// than s.Within before the group's newest event.
func (st *SequenceState) Observe(s *Sequence, steps []int, m alert.Member) (fired []SequenceFiring, changed bool) {
	for _, f := range st.Fired {
		if slices.ContainsFunc(f.Events, func(x alert.Member) bool { return x.AuditID == m.AuditID }) {
			fired = append(fired, f)
		}
	}
	if len(fired) > 0 {
		return fired, false
	}
	if len(st.Steps) != len(s.Steps) {
		st.Steps = make([][]alert.Member, len(s.Steps))
	}
	for _, k := range steps {
		if slices.ContainsFunc(st.Steps[k], func(x alert.Member) bool { return x.AuditID == m.AuditID }) {
			continue
		}
		i, _ := slices.BinarySearchFunc(st.Steps[k], m, alert.CompareMembers)
		st.Steps[k] = slices.Insert(st.Steps[k], i, m)
		changed = true
	}
	if !changed {
		return nil, false
	}
	st.prune(s)
	for i := 0; i < len(st.Steps[0]); {
		f, ok := st.complete(s, st.Steps[0][i])
		if !ok {
			i++
			continue
		}
		fired = append(fired, f)
		st.Fired = append(st.Fired, f)
		// The first step is spent; the later ones may serve another.
		st.Steps[0] = slices.Delete(st.Steps[0], i, i+1)
	}
	if len(st.Fired) > MaxSequenceEvents {
		st.Fired = st.Fired[len(st.Fired)-MaxSequenceEvents:]
	}
	return fired, true
}

// complete finds the earliest events that follow the first-step event a
// through every later step, within the sequence's span.
func (st *SequenceState) complete(s *Sequence, a alert.Member) (SequenceFiring, bool) {
	chain := []alert.Member{a}
	end := a.Time.Add(s.Within)
	prev := a
	for k := 1; k < len(st.Steps); k++ {
		i := slices.IndexFunc(st.Steps[k], func(x alert.Member) bool {
			return alert.CompareMembers(x, prev) > 0 && !x.Time.After(end) &&
				!slices.ContainsFunc(chain, func(c alert.Member) bool { return c.AuditID == x.AuditID })
		})
		if i < 0 {
			return SequenceFiring{}, false
		}
		prev = st.Steps[k][i]
		chain = append(chain, prev)
	}
	return SequenceFiring{Events: chain}, true
}

// prune drops the events older than the span before the group's newest,
// then the earliest of each step past MaxSequenceEvents, and the firings
// whose events all left the span.
func (st *SequenceState) prune(s *Sequence) {
	var newest time.Time
	for _, evs := range st.Steps {
		if n := len(evs); n > 0 && evs[n-1].Time.After(newest) {
			newest = evs[n-1].Time
		}
	}
	from := newest.Add(-s.Within)
	for k, evs := range st.Steps {
		i, _ := slices.BinarySearchFunc(evs, from, func(x alert.Member, t time.Time) int { return x.Time.Compare(t) })
		evs = evs[i:]
		if len(evs) > MaxSequenceEvents {
			evs = evs[len(evs)-MaxSequenceEvents:]
		}
		st.Steps[k] = evs
	}
	st.Fired = slices.DeleteFunc(st.Fired, func(f SequenceFiring) bool {
		return f.Events[len(f.Events)-1].Time.Before(from.Add(-s.Within))
	})
}

// SequenceKey names the state of one sequence rule and group.
func SequenceKey(ruleID string, group []string) string {
	return "sequence." + ruleID + "." + GroupHash(group)
}

// SequenceAlertID identifies a sequence's alert by rule, group and the
// request of its first step: workers that see the later steps in other
// orders still agree on it.
func SequenceAlertID(ruleID string, group []string, f SequenceFiring) string {
	return ruleID + "/" + GroupHash(group) + "/" + GroupHash([]string{f.Anchor()})
}
