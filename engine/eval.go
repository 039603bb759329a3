package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	set     *rules.Set
	th      ThresholdStore
	onError func(ruleID string, err error)
	m       *metrics.Metrics
	evals   atomic.Uint64
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
	e := &Evaluator{set: set, th: th, onError: func(string, error) {}}
	for _, o := range opts {
		o(e)
	}
	if e.m == nil {
		e.m = metrics.New(nil)
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
		r := m.Rule
		e.m.RuleMatches.WithLabelValues(r.ID).Inc()
		if r.Threshold == nil {
			a := newAlert(r, m.Output, ev)
			a.ID = alert.ID(r.ID, ev.AuditID)
			out = append(out, a)
			continue
		}
		f, err := e.observe(ctx, m, ev)
		if err != nil {
			return nil, fmt.Errorf("threshold of rule %s: %w", r.ID, err)
		}
		if f == nil {
			continue
		}
		a := newAlert(r, m.Output, ev)
		a.ID = rules.ThresholdAlertID(r.ID, m.GroupKey, r.Threshold, f)
		a.Count = f.Count
		a.Window = r.Threshold.Window.String()
		out = append(out, a)
	}
	return out, nil
}

func newAlert(r *rules.Rule, output string, ev *audit.Event) *alert.Alert {
	a := alert.New(ev)
	a.Rule = r.ID
	a.Title = r.Title
	a.Severity = r.Severity
	a.Tags = append([]string{}, r.Tags...)
	a.Output = output
	return a
}

// observe counts a match into its threshold window by read-modify-CAS, so
// that workers sharing the store never lose each other's counts.
func (e *Evaluator) observe(ctx context.Context, m rules.Match, ev *audit.Event) (*rules.Firing, error) {
	key := rules.ThresholdKey(m.Rule.ID, m.GroupKey)
	for range maxCASAttempts {
		val, rev, err := e.th.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		var st rules.WindowState
		if len(val) > 0 {
			if err := json.Unmarshal(val, &st); err != nil {
				// Unreadable state only loses a partial count; starting
				// over beats blocking the rule for good.
				e.failed(m.Rule.ID, fmt.Errorf("threshold state %s unreadable, reset: %w", key, err))
				st = rules.WindowState{}
			}
		}
		f, changed := st.Observe(m.Rule.Threshold, ev.AuditID, m.Distinct, WindowTime(ev))
		if !changed {
			return f, nil
		}
		data, err := json.Marshal(&st)
		if err != nil {
			return nil, err
		}
		if _, err := e.th.Update(ctx, key, data, rev); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("state %s: %w after %d attempts", key, ErrConflict, maxCASAttempts)
}
