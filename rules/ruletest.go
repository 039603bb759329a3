package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
	matched, output, errs := s.TryRule(r, tc.Events)
	switch {
	case matched != tc.Match:
		var b strings.Builder
		if tc.Match {
			b.WriteString("expected a match, the rule did not match")
		} else {
			fmt.Fprintf(&b, "expected no match, the rule matched: %s", output)
		}
		for _, e := range errs {
			fmt.Fprintf(&b, "; evaluation error: %v", e)
		}
		res.Why = b.String()
	case matched && tc.Output != nil && *tc.Output != output:
		res.Why = fmt.Sprintf("output %q, expected %q", output, *tc.Output)
	default:
		res.Passed = true
	}
	return res
}

// TryRule evaluates one rule, enabled or not, over a sequence of events, as
// the engine would with fresh threshold state. It reports whether the rule
// fired, the output of its first firing and any evaluation errors.
func (s *Set) TryRule(r *Rule, events []*audit.Event) (bool, string, []error) {
	var errs []error
	states := map[string]*WindowState{}
	for _, ev := range events {
		if !slices.Contains(r.Stages, ev.Stage) {
			continue
		}
		a := newActivation(s, ev)
		ok, err := evalBool(r.cond, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		m := Match{Rule: r, Output: defaultOutput(r, ev)}
		if r.output != nil {
			out, err := evalString(r.output, a)
			if err != nil {
				errs = append(errs, fmt.Errorf("output: %w", err))
			} else {
				m.Output = out
			}
		}
		if r.Threshold == nil {
			return true, m.Output, errs
		}
		if err := thresholdKey(r, a, &m); err != nil {
			errs = append(errs, err)
			continue
		}
		key := ThresholdKey(r.ID, m.GroupKey)
		st := states[key]
		if st == nil {
			st = &WindowState{}
			states[key] = st
		}
		if f, _ := st.Observe(r.Threshold, ev.AuditID, m.Distinct, ev.Time()); f != nil {
			return true, m.Output, errs
		}
	}
	return false, "", errs
}
