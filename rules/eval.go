package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	json "github.com/goccy/go-json" // faster drop-in for encoding/json: bodies are the costly part
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// Match is a rule whose condition held on an event.
type Match struct {
	Rule   *Rule
	Output string
	// GroupKey holds the values of the rule's threshold `by` expressions.
	GroupKey []string
	// Distinct is the value of the threshold's `distinct` expression.
	Distinct string
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
// matches of the others. A done ctx stops evaluation with ctx.Err().
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
	var a *activation
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

func thresholdKey(r *Rule, a *activation, m *Match) error {
	m.GroupKey = make([]string, len(r.by))
	for i, p := range r.by {
		v, _, err := p.Eval(a)
		if err != nil {
			return fmt.Errorf("threshold by %q: %w", r.Threshold.By[i], err)
		}
		m.GroupKey[i] = valueString(v)
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
func evalRule(r *Rule, a *activation, ev *audit.Event, fail func(*Rule, error)) (Match, bool) {
	ok, err := evalBool(r.cond, a)
	if err != nil {
		fail(r, err)
		return Match{}, false
	}
	if !ok {
		return Match{}, false
	}
	m := Match{Rule: r}
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
	return m, true
}

func evalBool(p cel.Program, a *activation) (bool, error) {
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

func evalString(p cel.Program, a *activation) (string, error) {
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

const (
	macroUnknown uint8 = iota
	macroFalse
	macroTrue
	macroRunning
)

// activation is what rules see of one event. It memoizes everything that
// costs more than a field read: macro results and decoded objects.
type activation struct {
	set    *Set
	ev     *audit.Event
	macros []uint8
	// macroErrs keeps a failed macro's error for every rule that uses it.
	macroErrs []ref.Val
	// fields holds the values of event fields read so far, decoded bodies
	// included.
	fields           []ref.Val
	evVal, macrosVal ref.Val
	listsVal         ref.Val
}

var _ interpreter.Activation = (*activation)(nil)

func newActivation(s *Set, ev *audit.Event) *activation {
	a := &activation{set: s, ev: ev, fields: make([]ref.Val, s.objs[typeEvent].cached)}
	if n := len(s.macros); n > 0 {
		a.macros = make([]uint8, n)
	}
	return a
}

// acquire takes an activation from the set's pool: at hundreds of thousands
// of events a second, one allocation per event and rule set adds up. Values
// rules return never refer to the activation, so it can be reused once
// evaluation is over.
func (s *Set) acquire(ev *audit.Event) *activation {
	a, ok := s.pool.Get().(*activation)
	if !ok {
		return newActivation(s, ev)
	}
	a.ev = ev
	return a
}

func (s *Set) release(a *activation) {
	clear(a.macros)
	clear(a.fields)
	a.macroErrs = nil
	a.ev = nil
	s.pool.Put(a)
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		if a.evVal == nil {
			a.evVal = object{t: a.set.objs[typeEvent], val: a}
		}
		return a.evVal, true
	case "macros":
		if a.macrosVal == nil {
			a.macrosVal = object{t: a.set.objs[typeMacros], val: a}
		}
		return a.macrosVal, true
	case "lists":
		if a.listsVal == nil {
			a.listsVal = object{t: a.set.objs[typeLists], val: a}
		}
		return a.listsVal, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) macro(i int) ref.Val {
	switch a.macros[i] {
	case macroTrue:
		return types.True
	case macroFalse:
		return types.False
	case macroRunning:
		return types.NewErr("macro refers to itself")
	}
	if a.macroErrs != nil && a.macroErrs[i] != nil {
		return a.macroErrs[i]
	}
	p := a.set.macros[i]
	if p == nil {
		return types.NewErr("macro was not compiled")
	}
	a.macros[i] = macroRunning
	v, _, err := p.Eval(a)
	if err != nil {
		a.macros[i] = macroUnknown
		if a.macroErrs == nil {
			a.macroErrs = make([]ref.Val, len(a.macros))
		}
		a.macroErrs[i] = types.WrapErr(err)
		return a.macroErrs[i]
	}
	if v == types.True {
		a.macros[i] = macroTrue
	} else {
		a.macros[i] = macroFalse
	}
	return v
}

// decodeObject turns a request or response body of at most the set's
// object limit into a CEL value; a larger one reads as absent. Secret
// material is redacted here, before any rule or output can see it, so an
// alert can never carry it.
func (s *Set) decodeObject(ev *audit.Event, raw []byte) ref.Val {
	empty := types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})
	if len(raw) > s.objectBytes {
		s.tooLarge.Inc()
		return empty
	}
	if len(raw) == 0 {
		return empty
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return empty
	}
	resource := ""
	if ev.ObjectRef != nil {
		resource = ev.ObjectRef.Resource
	}
	v = alert.RedactObject(resource, v)
	return types.DefaultTypeAdapter.NativeToValue(v)
}
