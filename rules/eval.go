package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/rules/compile"
)

// Match is a rule whose condition held on an event.
type Match struct {
	Rule   *Rule
	Output string
	// GroupKey holds the values of the rule's threshold `by` expressions.
	GroupKey []string
	// Distinct is the value of the threshold's `distinct` expression.
	Distinct string
	// Exception names the rule's exception that held on the event: the
	// match raises no alert, and Output, GroupKey, Distinct and
	// SuppressKey are not evaluated.
	Exception string
	// SuppressKey holds the values of the rule's suppress `by`
	// expressions; nil when one failed, and the match is not held back.
	SuppressKey []string
	// TermsEntity and TermsValue are a first-seen rule's entity and the
	// value that must be new for it.
	TermsEntity []string
	TermsValue  []string
	// Steps are the indexes of the sequence steps the event matched, and
	// SequenceKey the values of the sequence's by expressions.
	Steps       []int
	SequenceKey []string
}

// RuleError is a rule that failed to evaluate on an event. The rule counts
// as not matching.
type RuleError struct {
	RuleID string
	Err    error
}

func (e RuleError) Error() string { return e.RuleID + ": " + e.Err.Error() }
func (e RuleError) Unwrap() error { return e.Err }

// EvalErrors lists the rules that failed on one event.
type EvalErrors struct {
	List []RuleError
}

func (e *EvalErrors) Error() string {
	parts := make([]string, len(e.List))
	for i, re := range e.List {
		parts[i] = re.Error()
	}
	return strings.Join(parts, "; ")
}

// Eval runs every enabled rule for the event's stage. Rules that fail to
// evaluate do not match; they are reported in an *EvalErrors next to the
// matches of the others. A match an exception suppressed is returned too,
// with Exception set, so that callers can count it; it raises no alert.
// A done ctx stops evaluation with ctx.Err().
func (s *Set) Eval(ctx context.Context, ev *audit.Event) ([]Match, error) {
	return s.eval(ctx, ev, nil)
}

// EvalTimed is Eval that also reports how long each evaluated rule took.
// Reading the clock around every rule costs more than many rules do, so
// callers time a sample of events rather than all of them.
func (s *Set) EvalTimed(ctx context.Context, ev *audit.Event, observe func(ruleID string, d time.Duration)) ([]Match, error) {
	return s.eval(ctx, ev, observe)
}

func (s *Set) eval(ctx context.Context, ev *audit.Event, observe func(string, time.Duration)) ([]Match, error) {
	resource := ""
	if ev.ObjectRef != nil {
		resource = ev.ObjectRef.Resource
	}
	rs := s.index.candidates(ev.Stage, resource)
	if len(rs) == 0 {
		return nil, nil
	}
	// Most events pass no rule's guard: the activation is only taken for
	// one that does.
	var a *compile.Activation
	defer func() {
		if a != nil {
			s.release(a)
		}
	}()
	var matches []Match
	var errs *EvalErrors
	fail := func(r *Rule, err error) {
		if errs == nil {
			errs = &EvalErrors{}
		}
		errs.List = append(errs.List, RuleError{RuleID: r.ID, Err: err})
	}
	for _, r := range rs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if r.guard != nil && !r.guard(ev) {
			continue
		}
		if a == nil {
			a = s.acquire(ev)
		}
		var start time.Time
		if observe != nil {
			start = time.Now()
		}
		m, ok := evalRule(r, a, ev, fail)
		if observe != nil {
			observe(r.ID, time.Since(start))
		}
		if ok {
			matches = append(matches, m)
		}
	}
	if errs != nil {
		return matches, errs
	}
	return matches, nil
}

// groupValues evaluates the expressions of a group key; texts are their
// source, for errors.
func groupValues(ps []cel.Program, texts []string, what string, a *compile.Activation) ([]string, error) {
	out := make([]string, len(ps))
	for i, p := range ps {
		v, _, err := p.Eval(a)
		if err != nil {
			return out, fmt.Errorf("%s %q: %w", what, texts[i], err)
		}
		out[i] = valueString(v)
	}
	return out, nil
}

func thresholdKey(r *Rule, a *compile.Activation, m *Match) error {
	var err error
	if m.GroupKey, err = groupValues(r.by, r.Threshold.By, "threshold by", a); err != nil {
		return err
	}
	if r.distinct != nil {
		v, _, err := r.distinct.Eval(a)
		if err != nil {
			return fmt.Errorf("threshold distinct: %w", err)
		}
		m.Distinct = valueString(v)
	}
	return nil
}

func valueString(v ref.Val) string {
	if s, ok := v.(types.String); ok {
		return string(s)
	}
	if s, ok := v.ConvertToType(types.StringType).(types.String); ok {
		return string(s)
	}
	return fmt.Sprint(v.Value())
}

// evalRule evaluates one rule that passed the prefilter.
func evalRule(r *Rule, a *compile.Activation, ev *audit.Event, fail func(*Rule, error)) (Match, bool) {
	ok, err := evalBool(r.cond, a)
	if err != nil {
		fail(r, err)
		return Match{}, false
	}
	if !ok {
		return Match{}, false
	}
	m := Match{Rule: r}
	for i, p := range r.steps {
		ok, err := evalBool(p, a)
		if err != nil {
			fail(r, fmt.Errorf("sequence step %s: %w", r.Sequence.Steps[i], err))
			continue
		}
		if ok {
			m.Steps = append(m.Steps, i)
		}
	}
	if r.Sequence != nil && len(m.Steps) == 0 {
		return Match{}, false
	}
	if m.Exception = excepted(r, a, fail); m.Exception != "" {
		return m, true
	}
	if r.output != nil {
		out, err := evalString(r.output, a)
		if err != nil {
			fail(r, fmt.Errorf("output: %w", err))
			out = defaultOutput(r, ev)
		}
		m.Output = out
	} else {
		m.Output = defaultOutput(r, ev)
	}
	if r.Threshold != nil {
		if err := thresholdKey(r, a, &m); err != nil {
			fail(r, err)
			return Match{}, false
		}
	}
	if r.Sequence != nil {
		var err error
		if m.SequenceKey, err = groupValues(r.sequenceBy, r.Sequence.By, "sequence by", a); err != nil {
			fail(r, err)
			return Match{}, false
		}
	}
	if r.NewTerms != nil {
		var err error
		if m.TermsEntity, err = groupValues(r.termsEntity, r.NewTerms.Entity, "new_terms field", a); err == nil {
			m.TermsValue, err = groupValues(r.termsValue, r.NewTerms.Value, "new_terms field", a)
		}
		if err != nil {
			fail(r, err)
			return Match{}, false
		}
	}
	if r.Suppress != nil {
		key, err := groupValues(r.suppressBy, r.Suppress.By, "suppress by", a)
		if err != nil {
			// Without its group the match cannot be held back: it
			// alerts on its own (SuppressKey nil), as an alert too many
			// beats one missed.
			fail(r, err)
			key = nil
		}
		m.SuppressKey = key
	}
	return m, true
}

// excepted returns the name of the first of the rule's exceptions that
// holds. One that fails to evaluate is reported and does not hold: an
// exception only ever removes alerts, so when in doubt the alert stays.
func excepted(r *Rule, a *compile.Activation, fail func(*Rule, error)) string {
	for _, e := range r.exceptions {
		ok, err := evalBool(e.when, a)
		if err != nil {
			fail(r, fmt.Errorf("exception %s: %w", e.name, err))
			continue
		}
		if ok {
			return e.name
		}
	}
	return ""
}

func evalBool(p cel.Program, a *compile.Activation) (bool, error) {
	if p == nil {
		return false, errors.New("rule was not compiled")
	}
	v, _, err := p.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition gave %s, not a boolean", v.Type().TypeName())
	}
	return bool(b), nil
}

func evalString(p cel.Program, a *compile.Activation) (string, error) {
	v, _, err := p.Eval(a)
	if err != nil {
		return "", err
	}
	s, ok := v.(types.String)
	if !ok {
		return "", fmt.Errorf("output gave %s, not a string", v.Type().TypeName())
	}
	return string(s), nil
}

// defaultOutput describes the event when a rule has no output expression.
func defaultOutput(r *Rule, ev *audit.Event) string {
	var b strings.Builder
	b.WriteString(r.Title)
	b.WriteString(": ")
	user := ev.User.Username
	if user == "" {
		user = "(unknown user)"
	}
	b.WriteString(user)
	if ev.ImpersonatedUser != nil && ev.ImpersonatedUser.Username != "" {
		b.WriteString(" as ")
		b.WriteString(ev.ImpersonatedUser.Username)
	}
	b.WriteString(" ")
	b.WriteString(ev.Verb)
	if o := ev.ObjectRef; o != nil {
		b.WriteString(" ")
		b.WriteString(o.Resource)
		if o.Subresource != "" {
			b.WriteString("/" + o.Subresource)
		}
		if o.Namespace != "" || o.Name != "" {
			b.WriteString(" ")
			if o.Namespace != "" {
				b.WriteString(o.Namespace + "/")
			}
			b.WriteString(o.Name)
		}
	} else if ev.RequestURI != "" {
		b.WriteString(" ")
		b.WriteString(ev.RequestURI)
	}
	if code := ev.ResponseCode(); code != 0 {
		fmt.Fprintf(&b, " (%d)", code)
	}
	return b.String()
}

// newActivation returns an activation of its own showing ev.
func newActivation(s *Set, ev *audit.Event) *compile.Activation { return s.scope.NewActivation(ev) }

// acquire takes an activation from the set's pool: at hundreds of thousands
// of events a second, one allocation per event and rule set adds up.
func (s *Set) acquire(ev *audit.Event) *compile.Activation {
	a, ok := s.pool.Get().(*compile.Activation)
	if !ok {
		return newActivation(s, ev)
	}
	a.Bind(ev)
	return a
}

func (s *Set) release(a *compile.Activation) {
	a.Release()
	s.pool.Put(a)
}
