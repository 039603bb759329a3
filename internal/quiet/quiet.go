// Package quiet raises an alert when an audit source goes quiet: a
// kube-apiserver logs lease renewals every few seconds, so minutes without
// an event mean that its audit pipeline stopped, which is itself an
// attack signal (a disabled audit log hides what follows).
//
// What a source last stored is kept in a key-value bucket, shared by
// every replica reading the source and outliving a restart, so that one
// silence is alerted once: its alerts are named by the source and the
// time the last event before it arrived.
package quiet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// The alerts' rule ids.
const (
	RuleSilent  = "audit-source-silent"
	RuleResumed = "audit-source-resumed"
)

// DefaultAfter is how long a source may store no event before it is
// alerted.
const DefaultAfter = 5 * time.Minute

// RunbookURL is the section of docs/rules.md on what to do.
const RunbookURL = "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#audit-sources"

// Bounds of how often a source is checked: a fifth of After, so that a
// silence is alerted at most a fifth late, but not more often than
// minCheck nor less than maxCheck.
const (
	minCheck = 50 * time.Millisecond
	maxCheck = 30 * time.Second
)

// finalTimeout bounds recording the last event seen when the watch stops.
const finalTimeout = 2 * time.Second

// Source is one source to watch.
type Source struct {
	// Key names the source in the bucket: the same for every replica that
	// reads the source, and across restarts.
	Key string
	// Name says which source it is in the alert ("file /var/log/audit.log
	// on node-1").
	Name    string
	Cluster string
	// After is how long without an event is a silence; DefaultAfter when
	// zero.
	After time.Duration
}

// Publish stores an alert on ALERTS, returning once it is stored.
type Publish func(ctx context.Context, a *alert.Alert) error

// Watch watches one source.
type Watch struct {
	src     Source
	check   time.Duration
	log     *slog.Logger
	metrics *metrics.Metrics
	// seen is when the newest event this process stored arrived
	// (Unix nanoseconds), 0 before the first.
	seen atomic.Int64
	// started is when Run started: a process that was down gives its
	// source After to store the backlog it left (a file's lines written
	// meanwhile) before calling it silent.
	started time.Time
}

// New watches src; m counts the alerts raised (nil: none).
func New(src Source, m *metrics.Metrics, logger *slog.Logger) *Watch {
	if src.After <= 0 {
		src.After = DefaultAfter
	}
	if m == nil {
		m = metrics.New(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Watch{
		src:     src,
		check:   min(max(src.After/5, minCheck), maxCheck),
		log:     logger.With("source", src.Name),
		metrics: m,
	}
}

// Saw records that events of the source were stored at t. It is safe on
// a nil Watch (a source not watched).
func (w *Watch) Saw(t time.Time) {
	if w == nil {
		return
	}
	n := t.UnixNano()
	for {
		old := w.seen.Load()
		if old >= n || w.seen.CompareAndSwap(old, n) {
			return
		}
	}
}

// state is what the bucket keeps of a source.
type state struct {
	// LastSeen is when the source's newest event arrived (or, for a source
	// that has had none, when it was first watched).
	LastSeen time.Time `json:"lastSeen"`
	// Silent says that the silence after LastSeen has been alerted.
	Silent bool `json:"silent,omitempty"`
}

// Run checks the source until ctx ends, then records the last event it
// saw. Failures to reach the bucket are logged and retried on the next
// check; Run returns nil.
func (w *Watch) Run(ctx context.Context, kv jetstream.KeyValue, publish Publish) error {
	t := time.NewTicker(w.check)
	defer t.Stop()
	w.started = time.Now()
	for {
		if err := w.step(ctx, kv, publish, time.Now()); err != nil && ctx.Err() == nil {
			w.log.Warn("silence check failed; retrying", "err", err, "retry_in", w.check)
		}
		select {
		case <-ctx.Done():
			// So that a restart knows when the last event arrived.
			fctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
			defer cancel()
			if err := w.step(fctx, kv, publish, time.Now()); err != nil {
				w.log.Debug("last event not recorded", "err", err)
			}
			return nil
		case <-t.C:
		}
	}
}

// step brings the bucket up to date with what this process saw, and
// raises what that changes: audit-source-resumed when events arrived
// after an alerted silence, audit-source-silent when none arrived for
// After. An alert is stored before the state that records it, so that a
// crash between the two raises it again under the same id, which
// JetStream drops.
func (w *Watch) step(ctx context.Context, kv jetstream.KeyValue, publish Publish, now time.Time) error {
	seen := time.Time{}
	if n := w.seen.Load(); n > 0 {
		seen = time.Unix(0, n)
	}
	e, err := kv.Get(ctx, w.src.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Watched for the first time: a source that never sends is a
		// silence too, counted from now.
		first := state{LastSeen: now}
		if seen.After(now) {
			first.LastSeen = seen
		}
		_, err = kv.Create(ctx, w.src.Key, encode(first))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // another replica was first; read it next time
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", w.src.Key, err)
	}
	var st state
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// Never written by vigil: start afresh rather than never alert.
		w.log.Error("source state unreadable; counting from now", "key", w.src.Key, "err", err)
		if _, err := kv.Update(ctx, w.src.Key, encode(state{LastSeen: now}), e.Revision()); err != nil {
			return fmt.Errorf("replace %s: %w", w.src.Key, err)
		}
		return nil
	}
	next := st
	switch {
	case seen.After(st.LastSeen):
		if st.Silent {
			if err := w.raise(ctx, publish, w.resumed(st.LastSeen, seen)); err != nil {
				return err
			}
		}
		next = state{LastSeen: seen}
	case !st.Silent && now.Sub(st.LastSeen) >= w.src.After && now.Sub(w.started) >= w.src.After:
		if err := w.raise(ctx, publish, w.silent(st.LastSeen)); err != nil {
			return err
		}
		next.Silent = true
	default:
		return nil
	}
	// A conflict is another replica's newer state: the next check reads it.
	_, err = kv.Update(ctx, w.src.Key, encode(next), e.Revision())
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("update %s: %w", w.src.Key, err)
	}
	return nil
}

func (w *Watch) raise(ctx context.Context, publish Publish, a *alert.Alert) error {
	if err := publish(ctx, a); err != nil {
		return fmt.Errorf("raise %s: %w", a.ID, err)
	}
	w.metrics.AlertsPublished.WithLabelValues(a.Rule, a.Severity).Inc()
	w.log.Warn("source alert raised", "alert", a.ID, "output", a.Output)
	return nil
}

// silent is the alert of the silence after last. Its time is when the
// source became silent, After past last: every replica raising it raises
// the same alert.
func (w *Watch) silent(last time.Time) *alert.Alert {
	a := w.alert(RuleSilent, last, last.Add(w.src.After))
	a.Title = "An audit source stopped sending events"
	a.Severity = alert.SeverityHigh
	a.Tags = []string{"defense-evasion", "T1562"}
	a.Output = fmt.Sprintf("no audit event from %s for more than %s: the last arrived at %s", w.src.Name, w.src.After, last.UTC().Format(time.RFC3339))
	a.Description = "An apiserver logs lease renewals every few seconds: minutes without an event mean its audit log, webhook backend or cloud log delivery stopped, by failure or on purpose to hide what follows."
	return a
}

// resumed is the alert of the end of the silence after last, by an event
// that arrived at first.
func (w *Watch) resumed(last, first time.Time) *alert.Alert {
	a := w.alert(RuleResumed, last, first)
	a.Title = "An audit source sends events again"
	a.Severity = alert.SeverityInfo
	a.Tags = []string{"defense-evasion"}
	a.Output = fmt.Sprintf("audit events from %s again after %s without", w.src.Name, first.Sub(last).Round(time.Second))
	a.Description = "The source that went silent sends events again. What happened in the cluster while it was silent is not in the audit log."
	return a
}

// alert is what both alerts share. One silence is the source and the
// arrival of its last event before it; the id names both.
func (w *Watch) alert(rule string, last, at time.Time) *alert.Alert {
	return &alert.Alert{
		ID:         rule + "/" + w.src.Key + "/" + last.UTC().Format(time.RFC3339Nano),
		Rule:       rule,
		Cluster:    w.src.Cluster,
		Time:       at.UTC(),
		Count:      1,
		SourceIPs:  []string{},
		RunbookURL: RunbookURL,
	}
}

func encode(s state) []byte {
	data, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("quiet: state does not encode: %v", err)) // a time and a bool
	}
	return data
}
