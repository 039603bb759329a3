package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules"
)

// maxCASAttempts bounds retries of one threshold update under contention
// from other workers before the event is handed back for redelivery.
const maxCASAttempts = 16

// RuleTimingSample is one event in how many whose rules are timed for
// vigil_rule_eval_seconds_total: timing every event would cost more than
// the rules, and the sample's times, scaled, estimate what each rule costs
// overall.
const RuleTimingSample = 64

// Evaluator turns audit events into alerts ready to publish. It is safe for
// concurrent use.
type Evaluator struct {
	set       *rules.Set
	th        ThresholdStore
	onError   func(ruleID string, err error)
	onOutcome func(Outcome)
	m         *metrics.Metrics
	evals     atomic.Uint64
	terms     *termsCache
	state     ThresholdStore
}

// Outcome is what became of one rule's match on an event.
type Outcome struct {
	Rule    string
	AuditID string
	// Exception names the exception that suppressed the match.
	Exception string
	// Suppressed: a suppression window held the match back.
	Suppressed bool
	// Alerted: the match raised an alert (for a threshold rule: it
	// completed the count).
	Alerted bool
}

// WithOutcomes receives what became of every match, for reports such as
// replay's. It may be called from several goroutines at once.
func WithOutcomes(f func(Outcome)) Option {
	return func(e *Evaluator) { e.onOutcome = f }
}

// WithRuleState keeps what first-seen rules learn in s instead of the
// threshold store: their state outlives the threshold windows' TTL.
func WithRuleState(s ThresholdStore) Option {
	return func(e *Evaluator) { e.state = s }
}

// Option configures an Evaluator.
type Option func(*Evaluator)

// WithErrorHandler receives every rule that failed to evaluate on an event
// (the rule counts as not matching), for reports such as replay's. It may
// be called from several goroutines at once.
func WithErrorHandler(f func(ruleID string, err error)) Option {
	return func(e *Evaluator) { e.onError = f }
}

// WithMetrics counts into m each rule's matches (before thresholds decide
// whether it alerts) and errors, and its evaluation time on one event in
// RuleTimingSample. Without it the counts go to metrics registered
// nowhere.
func WithMetrics(m *metrics.Metrics) Option {
	return func(e *Evaluator) { e.m = m }
}

// NewEvaluator evaluates set, keeping threshold windows in th.
func NewEvaluator(set *rules.Set, th ThresholdStore, opts ...Option) *Evaluator {
	e := &Evaluator{set: set, th: th, onError: func(string, error) {}, onOutcome: func(Outcome) {}, terms: newTermsCache(DefaultTermsCacheEntities)}
	for _, o := range opts {
		o(e)
	}
	if e.m == nil {
		e.m = metrics.New(nil)
	}
	if e.state == nil {
		e.state = th
	}
	return e
}

// failed counts and reports a rule that failed on an event.
func (e *Evaluator) failed(ruleID string, err error) {
	e.m.RuleErrors.WithLabelValues(ruleID).Inc()
	e.onError(ruleID, err)
}

// Set is the rule set the evaluator runs.
func (e *Evaluator) Set() *rules.Set { return e.set }

// Thresholds is the store the evaluator keeps threshold windows in.
func (e *Evaluator) Thresholds() ThresholdStore { return e.th }

// RuleState is the store the evaluator keeps first-seen state in.
func (e *Evaluator) RuleState() ThresholdStore { return e.state }

// Evaluate returns the alerts ev raises. Per-event alerts are identified by
// rule and auditID, so the stages of one request give the same alert;
// threshold alerts by rule, group and window. An error means the event could
// not be fully evaluated (ctx done, threshold store failing) and should be
// retried; rule errors alone are reported to the error handler instead.
func (e *Evaluator) Evaluate(ctx context.Context, ev *audit.Event) ([]*alert.Alert, error) {
	var (
		matches []rules.Match
		err     error
	)
	if e.evals.Add(1)%RuleTimingSample == 0 {
		matches, err = e.set.EvalTimed(ctx, ev, func(id string, d time.Duration) {
			e.m.RuleEvalSeconds.WithLabelValues(id).Add((d * RuleTimingSample).Seconds())
		})
	} else {
		matches, err = e.set.Eval(ctx, ev)
	}
	if err != nil {
		var re *rules.EvalErrors
		if !errors.As(err, &re) {
			return nil, err
		}
		for _, x := range re.List {
			e.failed(x.RuleID, x.Err)
		}
	}
	var out []*alert.Alert
	for _, m := range matches {
		if m.Rule.Sequence != nil && m.Exception == "" {
			as, err := e.sequence(ctx, m, ev)
			if err != nil {
				return nil, fmt.Errorf("sequence of rule %s: %w", m.Rule.ID, err)
			}
			out = append(out, as...)
			continue
		}
		a, err := e.decide(ctx, m, ev)
		if err != nil {
			return nil, err
		}
		if a != nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// decide turns one match into its alert, or nil when an exception, a
// suppression window or a threshold not yet reached holds it back.
func (e *Evaluator) decide(ctx context.Context, m rules.Match, ev *audit.Event) (*alert.Alert, error) {
	r := m.Rule
	e.m.RuleMatches.WithLabelValues(r.ID).Inc()
	o := Outcome{Rule: r.ID, AuditID: ev.AuditID}
	defer func() { e.onOutcome(o) }()
	switch {
	case m.Exception != "":
		e.m.RuleExceptions.WithLabelValues(r.ID, m.Exception).Inc()
		o.Exception = m.Exception
		return nil, nil
	case r.Threshold != nil:
		f, err := e.observe(ctx, m, ev)
		if err != nil {
			return nil, fmt.Errorf("threshold of rule %s: %w", r.ID, err)
		}
		if f == nil {
			return nil, nil
		}
		a := newAlert(r, m.Output, ev)
		a.ID = rules.ThresholdAlertID(r.ID, m.GroupKey, r.Threshold, f)
		a.Count = f.Count
		a.Window = r.Threshold.Window.String()
		a.WindowSeconds = int(r.Threshold.Window / time.Second)
		a.Members = slices.Clone(f.Members)
		o.Alerted = true
		return a, nil
	case r.NewTerms != nil:
		f, err := e.newTerm(ctx, m, ev)
		if err != nil {
			return nil, fmt.Errorf("new_terms of rule %s: %w", r.ID, err)
		}
		if f == nil {
			return nil, nil
		}
		a := newAlert(r, m.Output, ev)
		a.ID = rules.TermsAlertID(r, m, f)
		o.Alerted = true
		return a, nil
	}
	// A match whose group could not be told (SuppressKey nil: a by
	// expression failed) alerts on its own.
	var f *rules.SuppressFiring
	if r.Suppress != nil && m.SuppressKey != nil {
		var held bool
		var err error
		if f, held, err = e.suppress(ctx, m, ev); err != nil {
			return nil, fmt.Errorf("suppression of rule %s: %w", r.ID, err)
		}
		if f == nil {
			if held {
				e.m.AlertsSuppressed.WithLabelValues(r.ID).Inc()
			}
			o.Suppressed = true
			return nil, nil
		}
	}
	// Built only for a match that alerts: a window holding back a probe
	// copies nothing of its events.
	a := newAlert(r, m.Output, ev)
	a.ID = alert.ID(r.ID, ev.AuditID)
	if f != nil {
		a.ID = rules.SuppressAlertID(r.ID, m.SuppressKey, r.Suppress, f)
		a.Suppressed = f.Carried
		a.WindowSeconds = int(r.Suppress.For / time.Second)
		a.Members = slices.Clone(f.Members)
	}
	o.Alerted = true
	return a, nil
}

func newAlert(r *rules.Rule, output string, ev *audit.Event) *alert.Alert {
	a := alert.New(ev)
	a.Rule = r.ID
	a.Title = r.Title
	a.Severity = r.Severity
	a.Tags = append([]string{}, r.Tags...)
	a.Output = output
	// A block scalar ends the description with a newline.
	a.Description = strings.TrimSpace(r.Description)
	a.RunbookURL = r.RunbookURL
	return a
}

// observe counts a match into its threshold window.
func (e *Evaluator) observe(ctx context.Context, m rules.Match, ev *audit.Event) (*rules.Firing, error) {
	var f *rules.Firing
	err := update(ctx, e, e.th, m.Rule.ID, rules.ThresholdKey(m.Rule.ID, m.GroupKey), func(st *rules.WindowState) bool {
		var changed bool
		f, changed = st.Observe(m.Rule.Threshold, alert.NewMember(ev), m.Distinct, WindowTime(ev))
		return changed
	})
	return f, err
}

// newTerm records the value of a first-seen rule's match for its entity,
// and returns the firing when the value is new. A sighting the worker's
// cache shows known is decided without reading the store.
func (e *Evaluator) newTerm(ctx context.Context, m rules.Match, ev *audit.Event) (*rules.TermFiring, error) {
	r, at, value := m.Rule, WindowTime(ev), rules.TermsValue(m)
	key := rules.TermsKey(r, m.TermsEntity)
	if st, ok := e.terms.get(key); ok && st.Known(r.NewTerms, value, ev.AuditID, at) {
		return nil, nil
	}
	var o rules.TermsObservation
	var seen rules.TermsState
	err := update(ctx, e, e.state, r.ID, key, func(st *rules.TermsState) bool {
		o = st.Observe(r.NewTerms, value, ev.AuditID, at)
		seen = *st
		return o.Changed
	})
	if err != nil {
		return nil, err
	}
	if o.Evicted > 0 {
		e.m.TermsEvicted.WithLabelValues(r.ID).Add(float64(o.Evicted))
	}
	e.terms.put(key, seen)
	return o.Fired, nil
}

// sequence adds a match of a sequence rule's steps to its group's state
// and returns an alert for each sequence it completes, built on the event
// that completed it and carrying every step's event.
func (e *Evaluator) sequence(ctx context.Context, m rules.Match, ev *audit.Event) ([]*alert.Alert, error) {
	r := m.Rule
	e.m.RuleMatches.WithLabelValues(r.ID).Inc()
	member := alert.NewMember(ev)
	member.Time = WindowTime(ev)
	var fired []rules.SequenceFiring
	err := update(ctx, e, e.th, r.ID, rules.SequenceKey(r.ID, m.SequenceKey), func(st *rules.SequenceState) bool {
		var changed bool
		fired, changed = st.Observe(r.Sequence, m.Steps, member)
		return changed
	})
	if err != nil {
		return nil, err
	}
	out := make([]*alert.Alert, 0, len(fired))
	for _, f := range fired {
		a := newAlert(r, m.Output, ev)
		a.ID = rules.SequenceAlertID(r.ID, m.SequenceKey, f)
		a.Members = slices.Clone(f.Events)
		a.Steps = slices.Clone(r.Sequence.Steps)
		a.ElapsedSeconds = int(f.Elapsed() / time.Second)
		a.WindowSeconds = int(r.Sequence.Within / time.Second)
		out = append(out, a)
	}
	e.onOutcome(Outcome{Rule: r.ID, AuditID: ev.AuditID, Alerted: len(out) > 0})
	return out, nil
}

// suppress passes a match through its group's suppression window: the
// firing when it alerts, nil when the window holds it back, and whether
// this is the first time the window held this request back.
func (e *Evaluator) suppress(ctx context.Context, m rules.Match, ev *audit.Event) (f *rules.SuppressFiring, held bool, err error) {
	err = update(ctx, e, e.th, m.Rule.ID, rules.SuppressKey(m.Rule.ID, m.SuppressKey), func(st *rules.SuppressState) bool {
		var changed bool
		f, changed = st.Observe(m.Rule.Suppress, alert.NewMember(ev), WindowTime(ev))
		held = f == nil && changed
		return changed
	})
	return f, held, err
}

// update changes the state S kept under key by read-modify-CAS, so that
// workers sharing the store never lose each other's changes. observe
// changes the state and reports whether it must be stored; it may run
// more than once, on fresher state, when another worker got there first.
func update[S any](ctx context.Context, e *Evaluator, store ThresholdStore, ruleID, key string, observe func(*S) bool) error {
	for range maxCASAttempts {
		val, rev, err := store.Get(ctx, key)
		if err != nil {
			return err
		}
		var st S
		if len(val) > 0 {
			if err := json.Unmarshal(val, &st); err != nil {
				// Unreadable state only loses a partial count; starting
				// over beats blocking the rule for good.
				e.failed(ruleID, fmt.Errorf("state %s unreadable, reset: %w", key, err))
				var zero S
				st = zero
			}
		}
		if !observe(&st) {
			return nil
		}
		data, err := json.Marshal(&st)
		if err != nil {
			return err
		}
		if _, err := store.Update(ctx, key, data, rev); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("state %s: %w after %d attempts", key, ErrConflict, maxCASAttempts)
}
