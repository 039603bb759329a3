package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// TestResult is the outcome of one rule test.
type TestResult struct {
	Case   *TestCase
	Passed bool
	// Why explains a failure in terms of what the rule did.
	Why string
}

// RunTests runs every test case of the set. Each case starts with empty
// threshold state, so a threshold rule matches only if its events alone
// reach the count.
func (s *Set) RunTests(ctx context.Context) ([]TestResult, error) {
	out := make([]TestResult, 0, len(s.tests))
	for _, tc := range s.tests {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		out = append(out, s.runTest(tc))
	}
	return out, nil
}

func (s *Set) runTest(tc *TestCase) TestResult {
	res := TestResult{Case: tc}
	r, ok := s.Rule(tc.Rule)
	if !ok {
		res.Why = fmt.Sprintf("no rule %q", tc.Rule)
		return res
	}
	try := s.Try(r, tc.Events)
	var b strings.Builder
	switch {
	case try.Fired != tc.Match:
		if tc.Match {
			b.WriteString("expected a match, the rule did not match")
		} else {
			fmt.Fprintf(&b, "expected no match, the rule matched: %s", try.Output)
		}
	case try.Fired && tc.Output != nil && *tc.Output != try.Output:
		fmt.Fprintf(&b, "output %q, expected %q", try.Output, *tc.Output)
	case len(try.Errors) > 0:
		// A rule that errs counts as not matching, so a case expecting
		// no match would pass for the wrong reason.
		b.WriteString("the rule failed to evaluate")
	default:
		res.Passed = true
		return res
	}
	for _, e := range try.Excepted {
		fmt.Fprintf(&b, "; a match was suppressed by exception %q", e)
	}
	for _, e := range try.Errors {
		fmt.Fprintf(&b, "; evaluation error: %v", e)
	}
	res.Why = b.String()
	return res
}

// TryResult is what a rule did over a sequence of events.
type TryResult struct {
	// Fired: the rule would have alerted.
	Fired bool
	// Output is the output of its first alert.
	Output string
	// Excepted names the exceptions that suppressed matches, in order.
	Excepted []string
	// Errors are the evaluation errors.
	Errors []error
}

// Try evaluates one rule, enabled or not, over a sequence of events, as
// the engine would with fresh threshold state. A first-seen or sequence
// rule fires only if the last event does: those before it are its history. A match an exception
// suppressed does not fire; suppression windows are left out, since the
// first match of a group always alerts.
func (s *Set) Try(r *Rule, events []*audit.Event) TryResult {
	var res TryResult
	fail := func(_ *Rule, err error) { res.Errors = append(res.Errors, err) }
	states := map[string]*WindowState{}
	terms := map[string]*TermsState{}
	seqs := map[string]*SequenceState{}
	for i, ev := range events {
		if !slices.Contains(r.Stages, ev.Stage) {
			continue
		}
		m, ok := evalRule(r, newActivation(s, ev), ev, fail)
		if !ok {
			continue
		}
		if m.Exception != "" {
			res.Excepted = append(res.Excepted, m.Exception)
			continue
		}
		if r.Sequence != nil {
			key := SequenceKey(r.ID, m.SequenceKey)
			st := stateOf(seqs, key)
			mem := alert.NewMember(ev)
			mem.Time = ev.Time()
			if fired, _ := st.Observe(r.Sequence, m.Steps, mem); i == len(events)-1 && len(fired) > 0 {
				res.Fired, res.Output = true, m.Output
			}
			continue
		}
		if r.NewTerms != nil {
			// The events before the last are the history the last is
			// judged against.
			key := TermsKey(r, m.TermsEntity)
			st := stateOf(terms, key)
			o := st.Observe(r.NewTerms, TermsValue(m), ev.AuditID, ev.Time())
			if i == len(events)-1 && o.Fired != nil {
				res.Fired, res.Output = true, m.Output
			}
			continue
		}
		if r.Threshold != nil {
			key := ThresholdKey(r.ID, m.GroupKey)
			st := stateOf(states, key)
			if f, _ := st.Observe(r.Threshold, alert.Member{AuditID: ev.AuditID}, m.Distinct, ev.Time()); f == nil {
				continue
			}
		}
		res.Fired, res.Output = true, m.Output
		return res
	}
	return res
}

// TryRule is Try, reporting whether the rule fired, the output of its
// first firing and any evaluation errors.
func (s *Set) TryRule(r *Rule, events []*audit.Event) (bool, string, []error) {
	res := s.Try(r, events)
	return res.Fired, res.Output, res.Errors
}

// stateOf is the state kept under key, created empty the first time.
func stateOf[S any](states map[string]*S, key string) *S {
	st := states[key]
	if st == nil {
		st = new(S)
		states[key] = st
	}
	return st
}
