// Package engine evaluates rules over audit events: the worker loop that
// consumes the AUDIT stream and publishes alerts, and the offline evaluator
// used by replay.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// AlertEvaluator turns one event into the alerts it raises.
type AlertEvaluator interface {
	Evaluate(ctx context.Context, ev *audit.Event) ([]*alert.Alert, error)
}

// Defaults of WorkerOptions, sized for segments (bus.Cut) of up to 64
// events and 256 KiB: a batch of 64 segments is 4,096 events, evaluated in
// well under a second, and a worker holds at most three batches' worth
// (the iterator's, the feed's and the one evaluated), about 50 MB at
// full-size segments. Larger batches gain segments nothing
// (BenchmarkWorkerConsumeSegments) and hold more memory; messages of one
// event (older versions, the file source) pay for the smaller pulls with
// more CPU per event. MaxAckPending leaves room for several workers each
// holding that much.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 10
	DefaultMaxAckPending = 2_000
	DefaultFetchBatch    = 64
)

// WorkerOptions configure a worker and the durable consumer it shares with
// every other worker. Zero fields take the defaults.
type WorkerOptions struct {
	// AckWait is how long a message (an event or a segment) may be held
	// before JetStream delivers it again (DefaultAckWait).
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one message; past it the message
	// is dead-lettered (DefaultMaxDeliver).
	MaxDeliver int
	// MaxAckPending bounds the messages held unacknowledged by all workers
	// together (DefaultMaxAckPending).
	MaxAckPending int
	// FetchBatch is how many messages one pull fetches (DefaultFetchBatch).
	FetchBatch int
	// AlertLimits bound what an alert copies from its event (zero fields:
	// alert.DefaultLimits).
	AlertLimits alert.Limits
	// Metrics count what the worker does. Nil: metrics of its own,
	// registered nowhere.
	Metrics *metrics.Metrics
}

func (o WorkerOptions) withDefaults() WorkerOptions {
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = DefaultFetchBatch
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	return o
}

// consumeBackoff paces starting consumption again after it stopped.
var consumeBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Timing of the worker loop.
const (
	// retryDelay is how long a message waits before redelivery when its
	// alerts could not be stored.
	retryDelay = 2 * time.Second
	// drainTimeout bounds how long a stopping worker spends finishing
	// messages it already holds.
	drainTimeout = 30 * time.Second
	// pullExpiry is how long one pull request waits on the server.
	pullExpiry = 2 * time.Second
	// recheckPull is how long a worker waits for a message before it
	// calls Next again, which is when nats.go sends a pull request it
	// skipped (see next).
	recheckPull = 10 * time.Millisecond
)

// WorkerStats are counters of one worker.
type WorkerStats struct {
	Events    atomic.Int64 // events evaluated, of single-event messages and segments
	Alerts    atomic.Int64 // alerts stored on ALERTS
	Malformed atomic.Int64 // events that were not audit events
	Retried   atomic.Int64 // events handed back for redelivery, with their message
}

// Worker consumes the AUDIT stream through the durable consumer shared by
// every worker, evaluates each event of each message (one event, or a
// segment of many) and stores their alerts on ALERTS before acknowledging
// the message: a crash at any point means redelivery, and alert MsgIDs
// make the redelivery harmless.
type Worker struct {
	js     jetstream.JetStream
	eval   AlertEvaluator
	cfg    WorkerOptions
	logger *slog.Logger
	m      *metrics.Metrics
	stats  WorkerStats
}

// NewWorker builds a worker; Run starts it.
func NewWorker(js jetstream.JetStream, eval AlertEvaluator, o WorkerOptions, logger *slog.Logger) *Worker {
	o = o.withDefaults()
	return &Worker{js: js, eval: eval, cfg: o, logger: logger, m: o.Metrics}
}

// Stats returns the worker's live counters.
func (w *Worker) Stats() *WorkerStats { return &w.stats }

// ConsumerConfig is the engine's durable consumer.
func ConsumerConfig(o WorkerOptions) jetstream.ConsumerConfig {
	cfg := o.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       bus.ConsumerEngine,
		Description:   "rule evaluation, shared by all workers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		FilterSubject: bus.SubjectAuditPrefix + ">",
	}
}

// Run consumes until ctx is done, then finishes the messages it holds and
// returns nil. A consumption that stops by itself (the consumer deleted, or
// pulls no longer answered, as by a cluster node that does not serve the
// consumer yet) is started again.
func (w *Worker) Run(ctx context.Context) error {
	waits := consumeBackoff.Sequence()
	for {
		cons, err := bus.EnsureConsumer(ctx, w.js, bus.StreamAudit, ConsumerConfig(w.cfg))
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // stopping while provisioning is a clean stop
			}
			return err
		}
		if w.consume(ctx, cons, waits) {
			return nil
		}
		if err := backoff.Wait(ctx, waits.Next()); err != nil {
			return nil //nolint:nilerr // stopping while waiting to consume again is a clean stop
		}
	}
}

// consume processes what it delivers, in batches of up to FetchBatch, until
// ctx is done or the iteration ends by itself; it reports whether ctx ended
// it, in which case what the worker held has been finished.
//
// Messages arrive through feed, which alone calls Next: only the worker's
// own goroutine waits while a batch is evaluated, never one of nats.go's,
// and a batch is what has already arrived when the previous one is done.
// What a worker holds is bounded by the batch: the iterator buffers at
// most FetchBatch, msgs as many, and the batch being processed.
func (w *Worker) consume(ctx context.Context, cons jetstream.Consumer, waits *backoff.Sequence) bool {
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.FetchBatch),
		// A pull lost on the server (a cluster node that does not serve
		// the consumer yet answers "no responders", which Next does not
		// report) is noticed by two missed heartbeats, which come every
		// half expiry: 2 s here, 30 s at nats.go's default. The short
		// expiry costs nothing under load, where pulls are filled long
		// before they expire; an idle worker sends one pull request and
		// gets two heartbeats every 2 s. The 30 s stalls it was first set
		// against were nats.go skipping a pull request, which next
		// prevents.
		jetstream.PullExpiry(pullExpiry))
	if err != nil {
		w.logger.Warn("consume failed; retrying", "err", err)
		return false
	}
	msgs := make(chan jetstream.Msg, w.cfg.FetchBatch)
	abandon := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { w.feed(it, msgs, abandon) })
	defer wg.Wait()
	batch := make([]jetstream.Msg, 0, w.cfg.FetchBatch)
	for ctx.Err() == nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				w.logger.Info("consumption stopped; starting it again")
				return false
			}
			batch = fill(append(batch[:0], m), msgs)
			w.process(ctx, batch)
			waits.Reset()
		case <-ctx.Done():
		}
	}
	// ctx is checked before each batch rather than left to the select's
	// choice: a stopping worker takes no further batch, since taking one
	// lets the iterator pull more.
	w.drain(it, msgs, abandon)
	return true
}

// feed hands every message of it to msgs and closes msgs once it is
// closed, or gives up when abandon is closed.
func (w *Worker) feed(it jetstream.MessagesContext, msgs chan<- jetstream.Msg, abandon <-chan struct{}) {
	defer close(msgs)
	// Made once: each Next would otherwise allocate its options.
	recheck := []jetstream.NextOpt{jetstream.NextMaxWait(recheckPull)}
	for {
		m, err := next(it, recheck)
		switch {
		case err == nil:
			select {
			case msgs <- m:
			case <-abandon:
				return
			}
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// Nothing came, not even a heartbeat, while a pull should
			// have been waiting on the server: it is gone (sent to a
			// cluster node that does not serve the consumer yet, or to a
			// consumer that no longer exists). Finish what arrived and
			// start over, provisioning the consumer again.
			w.logger.Debug("pull lost; consuming again", "err", err)
			it.Drain()
		default:
			// A terminal error (the consumer deleted) has closed it; the
			// next call says so.
			w.logger.Warn("consume", "err", err)
		}
	}
}

// next is it.Next, called again when nothing comes within recheckPull.
// nats.go decides whether to send another pull request only when Next is
// called or a message arrives, and skips the decision while its previous
// request is still being sent. A worker that takes everything it was sent
// in that moment (a backlog already delivered, while the request is
// written to a busy connection) is left with no request on the server and
// none to be sent until two heartbeats are missed: the lost pull of
// docs/benchmarks.md. The second call makes the decision again.
func next(it jetstream.MessagesContext, recheck []jetstream.NextOpt) (jetstream.Msg, error) {
	m, err := it.Next(recheck...)
	if errors.Is(err, nats.ErrTimeout) {
		return it.Next()
	}
	return m, err
}

// drain stops pulling and finishes every message already delivered to this
// worker, so a stop does not wait for AckWait redelivery.
func (w *Worker) drain(it jetstream.MessagesContext, msgs <-chan jetstream.Msg, abandon chan<- struct{}) {
	it.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	batch := make([]jetstream.Msg, 0, w.cfg.FetchBatch)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			batch = fill(append(batch[:0], m), msgs)
			w.process(ctx, batch)
		case <-ctx.Done():
			// What is left is redelivered after AckWait.
			close(abandon)
			return
		}
	}
}

// fill adds what is already waiting, up to the batch capacity.
func fill(batch []jetstream.Msg, msgs <-chan jetstream.Msg) []jetstream.Msg {
	for len(batch) < cap(batch) {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// process evaluates a batch of messages, each an event or a segment of
// events, stores all their alerts, then acknowledges them.
func (w *Worker) process(ctx context.Context, batch []jetstream.Msg) {
	var alerts []*alert.Alert
	done := make([]jetstream.Msg, 0, len(batch))
	events, doneEvents := 0, 0
	// A batch that takes a good part of AckWait (slow rules, a slow
	// threshold store) tells JetStream it is still being worked on, so that
	// it is not redelivered to another worker meanwhile.
	progressEvery := w.cfg.AckWait / 3
	lastProgress := time.Now()
	for i, m := range batch {
		if progressEvery > 0 && time.Since(lastProgress) > progressEvery {
			for _, pending := range batch[i:] {
				_ = pending.InProgress()
			}
			for _, pending := range done {
				_ = pending.InProgress()
			}
			lastProgress = time.Now()
		}
		as, n, ok := w.evaluate(ctx, m)
		events += n
		if !ok {
			continue
		}
		alerts = append(alerts, as...)
		done = append(done, m)
		doneEvents += n
	}
	w.stats.Events.Add(int64(events))
	for _, a := range alerts {
		cut := a.BoundTo(w.cfg.AlertLimits)
		if cut.Fields {
			w.m.LimitExceeded.WithLabelValues("alert_field_bytes").Inc()
		}
		if cut.SourceIPs {
			w.m.LimitExceeded.WithLabelValues("alert_source_ips").Inc()
		}
		if cut.Groups {
			w.m.LimitExceeded.WithLabelValues("alert_groups").Inc()
		}
	}
	if len(alerts) > 0 {
		if err := PublishAlerts(ctx, w.js, alerts); err != nil {
			w.logger.Warn("storing alerts failed; events will be redelivered", "alerts", len(alerts), "err", err)
			for _, m := range done {
				_ = m.NakWithDelay(retryDelay)
			}
			w.stats.Retried.Add(int64(doneEvents))
			return
		}
		w.stats.Alerts.Add(int64(len(alerts)))
		for _, a := range alerts {
			w.m.AlertsPublished.WithLabelValues(a.Rule, a.Severity).Inc()
		}
	}
	w.m.EventsEvaluated.Add(float64(doneEvents))
	for _, m := range done {
		if err := m.Ack(); err != nil {
			w.logger.Debug("ack", "err", err)
		}
	}
}

// evaluate evaluates every event of m and returns their alerts and how
// many it evaluated; ok is false when m is settled otherwise (handed back
// for redelivery, or dead-lettered whole) and must not be acknowledged.
//
// An event of a segment that is not an audit event is dead-lettered alone
// and the others evaluated: it could never succeed, and must not hold
// them back. An evaluation that fails hands the whole segment back; the
// events evaluated before it are evaluated again on redelivery, which is
// harmless: alert MsgIDs are ruleID/auditID and threshold windows count
// each auditID once.
func (w *Worker) evaluate(ctx context.Context, m jetstream.Msg) (alerts []*alert.Alert, evaluated int, ok bool) {
	h := m.Headers()
	lines, err := bus.SegmentEvents(h, m.Data())
	if err != nil {
		// Written by a newer version: a worker of that version reads it.
		// If none does, it reaches MaxDeliver and DeadLetterExhausted
		// moves it to DEAD.
		w.logger.Warn("segment not readable by this version; handed back", "subject", m.Subject(), "err", err)
		w.stats.Retried.Add(1)
		_ = m.NakWithDelay(retryDelay)
		return nil, 0, false
	}
	segment := h.Get(bus.HeaderSegment) != ""
	cluster := h.Get(bus.HeaderCluster)
	md, mdErr := m.Metadata()
	for i, line := range lines {
		// A message's payload is its own copy, never written again.
		ev := &audit.Event{}
		if err := audit.DecodeShared(line, ev); err != nil {
			if !segment {
				w.deadLetter(ctx, m, err)
				return nil, evaluated, false
			}
			if err := w.deadLetterEvent(ctx, m, md, i, line, err); err != nil {
				w.logger.Warn("dead-letter failed; segment will be redelivered", "err", err)
				w.stats.Retried.Add(int64(len(lines)))
				_ = m.NakWithDelay(retryDelay)
				return nil, evaluated, false
			}
			continue
		}
		ev.Cluster = cluster
		if mdErr == nil {
			ev.Stored = md.Timestamp
		}
		if FromTheFuture(ev) {
			w.m.FutureEvents.Inc()
		}
		as, err := w.eval.Evaluate(ctx, ev)
		if err != nil {
			w.logger.Warn("evaluation failed; will retry", "auditID", ev.AuditID, "stage", ev.Stage, "events", len(lines), "err", err)
			w.stats.Retried.Add(int64(len(lines)))
			_ = m.NakWithDelay(retryDelay)
			return nil, evaluated, false
		}
		evaluated++
		alerts = append(alerts, as...)
	}
	return alerts, evaluated, true
}

// deadLetterEvent stores event i of a segment that is not an audit event
// on DEAD, with the reason and where it was. Its MsgID names that place,
// so a redelivered segment does not dead-letter it twice.
func (w *Worker) deadLetterEvent(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, i int, data []byte, reason error) error {
	where := m.Subject() + "[" + strconv.Itoa(i) + "]"
	id := m.Headers().Get(jetstream.MsgIDHeader) + "/" + strconv.Itoa(i)
	if md != nil {
		where = m.Subject() + "#" + strconv.FormatUint(md.Sequence.Stream, 10) + "[" + strconv.Itoa(i) + "]"
		id = "malformed/" + strconv.FormatUint(md.Sequence.Stream, 10) + "/" + strconv.Itoa(i)
	}
	dl := &nats.Msg{Subject: bus.DeadSubject("engine"), Data: data, Header: nats.Header{}}
	dl.Header.Set(bus.HeaderReason, reason.Error())
	dl.Header.Set(bus.HeaderSource, where)
	if c := m.Headers().Get(bus.HeaderCluster); c != "" {
		dl.Header.Set(bus.HeaderCluster, c)
	}
	if _, err := w.js.PublishMsg(ctx, dl, jetstream.WithMsgID(id)); err != nil {
		return err
	}
	w.stats.Malformed.Add(1)
	w.m.DeadLetters.WithLabelValues("engine").Inc()
	w.logger.Warn("event of a segment is not an audit event; dead-lettered", "source", where, "err", reason)
	return nil
}

// deadLetter moves a message that is not an audit event out of the way
// with the reason; redelivering it could never succeed.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason error) {
	w.stats.Malformed.Add(1)
	w.m.DeadLetters.WithLabelValues("engine").Inc()
	w.logger.Warn("not an audit event; dead-lettered", "subject", m.Subject(), "err", reason)
	dl := &nats.Msg{Subject: bus.DeadSubject("engine"), Data: m.Data(), Header: nats.Header{}}
	dl.Header.Set(bus.HeaderReason, reason.Error())
	dl.Header.Set(bus.HeaderSource, m.Subject())
	if _, err := w.js.PublishMsg(ctx, dl); err != nil {
		w.logger.Warn("dead-letter failed; will retry", "err", err)
		_ = m.NakWithDelay(retryDelay)
		return
	}
	_ = m.Term()
}
