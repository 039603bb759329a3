package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
)

// maxReasonLen caps the dead-letter reason header.
const maxReasonLen = 1024

// Dispatcher reads the ALERTS stream with one durable consumer per
// destination and delivers to each independently, so a slow or failing
// destination never delays another.
type Dispatcher struct {
	js     jetstream.JetStream
	logger *slog.Logger
	opts   Options
	dests  []*destination
	// routes is swapped whole by SetRoutes (hot reload); a fetch is
	// routed with one snapshot.
	routes atomic.Pointer[[]Route]
}

type destination struct {
	Destination
	limiter    *rate.Limiter
	fetchBatch int
}

func checkRoutes(routes []Route, names map[string]bool) error {
	for i, r := range routes {
		for _, to := range r.To {
			if !names[to] {
				return fmt.Errorf("notify: routes[%d]: unknown destination %q", i, to)
			}
		}
	}
	return nil
}

// SetRoutes replaces the routing table while the dispatcher runs. The
// routes may only name the destinations it was built with: adding a
// destination needs a restart, since each has its own consumer and client.
func (d *Dispatcher) SetRoutes(routes []Route) error {
	names := map[string]bool{}
	for _, dst := range d.dests {
		names[dst.Name] = true
	}
	if err := checkRoutes(routes, names); err != nil {
		return err
	}
	r := slices.Clone(routes)
	d.routes.Store(&r)
	return nil
}

// NewDispatcher delivers to dests, routed by routes. Run starts it.
func NewDispatcher(js jetstream.JetStream, dests []Destination, routes []Route, opts Options, logger *slog.Logger) (*Dispatcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(dests) == 0 {
		return nil, errors.New("notify: no destinations")
	}
	d := &Dispatcher{js: js, logger: logger, opts: o}
	consumers := map[string]string{}
	for _, dc := range dests {
		c := ConsumerName(dc.Name)
		if other, dup := consumers[c]; dup {
			return nil, fmt.Errorf("notify: destinations %q and %q would share the consumer %s; rename one", other, dc.Name, c)
		}
		consumers[c] = dc.Name
	}
	for _, dc := range dests {
		dc, err := dc.withDefaults(o)
		if err != nil {
			return nil, err
		}
		dst := &destination{Destination: dc, fetchBatch: o.FetchBatch, limiter: rate.NewLimiter(rate.Inf, 1)}
		if r := dc.RateLimit; r > 0 {
			dst.limiter = rate.NewLimiter(rate.Limit(r), 1)
			// Fetch no more than can be sent well within the ack wait, so
			// alerts queued behind the rate limit are not redelivered.
			if perWait := int(r * o.AckWait.Seconds() / 2); perWait < dst.fetchBatch {
				dst.fetchBatch = max(perWait, 1)
			}
		}
		d.dests = append(d.dests, dst)
	}
	if err := d.SetRoutes(routes); err != nil {
		return nil, err
	}
	return d, nil
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(dest string) string {
	return bus.ConsumerNotifyPrefix + strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n', '/', '\\':
			return '_'
		}
		return r
	}, dest)
}

// Run delivers until ctx is done, then hands back what it holds (so another
// replica can take it at once) and returns nil. It fails only when the
// stream or bucket it needs is missing.
func (d *Dispatcher) Run(ctx context.Context) error {
	kv, err := d.js.KeyValue(ctx, bus.BucketNotify)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("notify: key-value bucket %s: %w", bus.BucketNotify, err)
	}
	workers := make([]*worker, 0, len(d.dests))
	for _, dst := range d.dests {
		cons, err := bus.EnsureConsumer(ctx, d.js, bus.StreamAlerts, jetstream.ConsumerConfig{
			Durable:       ConsumerName(dst.Name),
			Description:   "vigil notifications to " + dst.Name,
			FilterSubject: bus.SubjectAlertsPrefix + ".>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       d.opts.AckWait,
			// Attempts are counted and bounded here, so that the last one
			// ends in the dead-letter stream instead of silently stopping.
			MaxDeliver:    -1,
			MaxAckPending: DefaultMaxAckPending,
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("notify: destination %q: %w", dst.Name, err)
		}
		workers = append(workers, &worker{
			d: d, dst: dst, cons: cons, kv: kv,
			logger: d.logger.With("destination", dst.Name),
			groups: map[string]*group{},
		})
	}
	defer func() {
		for _, dst := range d.dests {
			if c, ok := dst.Notifier.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// worker delivers to one destination. It is a single goroutine: fetching,
// grouping timers and delivery all happen in its loop, so its state needs
// no locks.
type worker struct {
	d      *Dispatcher
	dst    *destination
	cons   jetstream.Consumer
	kv     jetstream.KeyValue
	logger *slog.Logger

	groups     map[string]*group
	pauseUntil time.Time
	lastKeep   time.Time
}

// item is one alert and the message that carried it.
type item struct {
	msg jetstream.Msg
	a   *alert.Alert
}

func (w *worker) run(ctx context.Context) {
	defer w.release()
	for ctx.Err() == nil {
		wait := w.d.opts.FetchWait
		now := w.d.opts.Now()
		for _, g := range w.groups {
			if u := g.flushAt.Sub(now); u < wait {
				wait = u
			}
		}
		if u := w.pauseUntil.Sub(now); u > wait {
			// A receiver asked us to back off: fetching more now would
			// only hold alerts in memory. Held alerts still need their
			// keep-alive, hence the cap.
			wait = min(u, w.d.opts.AckWait/3)
		}
		if wait < 20*time.Millisecond {
			wait = 20 * time.Millisecond
		}
		items := w.fetch(ctx, wait)
		w.handle(ctx, items)
		w.flushDue(ctx)
		w.keepAlive()
	}
}

// fetch pulls up to a batch, waiting at most wait for the first message.
func (w *worker) fetch(ctx context.Context, wait time.Duration) []item {
	if !w.pauseUntil.IsZero() && w.d.opts.Now().Before(w.pauseUntil) {
		w.sleep(ctx, wait)
		return nil
	}
	// Take what is waiting without blocking; when nothing is, block for
	// the first alert only, so that one alert is not held for a batch
	// to fill, then take whatever came with it.
	items, err := w.collect(ctx, func() (jetstream.MessageBatch, error) { return w.cons.FetchNoWait(w.dst.fetchBatch) })
	if err == nil && len(items) == 0 {
		fctx, cancel := context.WithTimeout(ctx, wait)
		items, err = w.collect(ctx, func() (jetstream.MessageBatch, error) {
			return w.cons.Fetch(1, jetstream.FetchContext(fctx))
		})
		cancel()
		if err == nil && len(items) > 0 && w.dst.fetchBatch > 1 {
			more, _ := w.collect(ctx, func() (jetstream.MessageBatch, error) { return w.cons.FetchNoWait(w.dst.fetchBatch - 1) })
			items = append(items, more...)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("fetching alerts failed", "err", err)
			w.sleep(ctx, wait)
		}
		return nil
	}
	return items
}

// collect runs one fetch and decodes what it returns; undecodable alerts
// are dead-lettered.
func (w *worker) collect(ctx context.Context, fetch func() (jetstream.MessageBatch, error)) ([]item, error) {
	batch, err := fetch()
	if err != nil {
		return nil, err
	}
	var items []item
	for msg := range batch.Messages() {
		a := new(alert.Alert)
		if err := json.Unmarshal(msg.Data(), a); err != nil || a.ID == "" {
			reason := "undecodable alert"
			if err != nil {
				reason += ": " + err.Error()
			}
			w.deadLetter(ctx, item{msg: msg, a: &alert.Alert{ID: "seq-" + seqOf(msg)}}, reason)
			continue
		}
		items = append(items, item{msg: msg, a: a})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		w.logger.Debug("fetch ended early", "err", err)
	}
	return items, nil
}

func (w *worker) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle routes fetched alerts: not ours or already delivered ones are
// acknowledged, grouped ones are held, the rest are delivered now.
func (w *worker) handle(ctx context.Context, items []item) {
	var now []item
	seen := map[string]bool{}
	routes := *w.d.routes.Load()
	for _, it := range items {
		ri, ok := RouteFor(routes, w.dst.Name, it.a)
		if !ok {
			w.ack(it.msg)
			continue
		}
		if seen[it.a.ID] || w.delivered(ctx, it.a) {
			w.d.opts.Metrics.NotifyDuplicates.WithLabelValues(w.dst.Name).Inc()
			w.ack(it.msg)
			continue
		}
		seen[it.a.ID] = true
		var g grouping
		if ri >= 0 {
			g = groupingOf(routes[ri])
		}
		if g.enabled() {
			w.hold(ctx, ri, g, it)
			continue
		}
		now = append(now, it)
	}
	if len(now) == 0 {
		return
	}
	if w.dst.Batch {
		w.deliver(ctx, now)
		return
	}
	for _, it := range now {
		if ctx.Err() != nil {
			w.nak(it.msg, 0)
			continue
		}
		w.deliver(ctx, []item{it})
	}
}

// deliver sends items as one notification and settles their messages.
// It reports whether the notification was delivered.
func (w *worker) deliver(ctx context.Context, items []item) bool {
	if err := w.waitTurn(ctx); err != nil {
		for _, it := range items {
			w.nak(it.msg, 0)
		}
		return false
	}
	alerts := make([]*alert.Alert, len(items))
	for i, it := range items {
		alerts[i] = it.a
	}
	sctx, cancel := context.WithTimeout(ctx, w.dst.Timeout)
	retry, err := w.dst.Notifier.Notify(sctx, alerts...)
	cancel()
	if err == nil {
		for _, it := range items {
			w.markDelivered(ctx, it.a)
			w.ack(it.msg)
		}
		w.d.opts.Metrics.NotifyDelivered.WithLabelValues(w.dst.Name).Add(float64(len(items)))
		w.logger.Debug("delivered", "alerts", len(items))
		return true
	}
	if ctx.Err() != nil {
		// Shutting down: not the receiver's fault, so no attempt is spent.
		for _, it := range items {
			w.nak(it.msg, 0)
		}
		return false
	}
	w.d.opts.Metrics.NotifyFailures.WithLabelValues(w.dst.Name).Inc()
	w.failed(ctx, items, retry, err)
	return false
}

// waitTurn blocks for the rate limit and any Retry-After pause.
func (w *worker) waitTurn(ctx context.Context) error {
	if d := w.pauseUntil.Sub(w.d.opts.Now()); d > 0 {
		w.sleep(ctx, d)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.dst.limiter.Wait(ctx)
}

// failed retries or dead-letters the items of a failed notification.
func (w *worker) failed(ctx context.Context, items []item, retry bool, err error) {
	after, hasAfter := RetryAfter(err)
	if hasAfter {
		w.pauseUntil = w.d.opts.Now().Add(after)
	}
	w.logger.Warn("delivery failed", "alerts", len(items), "retry", retry, "err", err)
	for _, it := range items {
		attempts := uint64(1)
		age := time.Duration(0)
		if md, merr := it.msg.Metadata(); merr == nil {
			attempts = md.NumDelivered
			age = w.d.opts.Now().Sub(md.Timestamp)
		}
		switch {
		case !retry:
			w.deadLetter(ctx, it, "not retryable: "+err.Error())
		case attempts >= uint64(w.dst.MaxAttempts):
			w.deadLetter(ctx, it, fmt.Sprintf("gave up after %d attempts: %s", attempts, err))
		default:
			delay := w.d.opts.Backoff.Delay(int(attempts))
			if hasAfter && after > delay {
				delay = after
			}
			if age+delay > w.d.opts.MaxAge {
				w.deadLetter(ctx, it, fmt.Sprintf("older than max_age %s after %d attempts: %s", w.d.opts.MaxAge, attempts, err))
				continue
			}
			w.nak(it.msg, delay)
		}
	}
}

// deadLetter publishes the alert to the destination's dead-letter subject
// and acknowledges the original. If the publish fails the message is
// returned for redelivery rather than lost.
func (w *worker) deadLetter(ctx context.Context, it item, reason string) {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	msg := nats.NewMsg(bus.DeadSubject("notify", w.dst.Name))
	msg.Data = it.msg.Data()
	msg.Header.Set(bus.HeaderReason, strings.ToValidUTF8(strings.ReplaceAll(reason, "\n", " "), "?"))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := w.d.js.PublishMsg(pctx, msg, jetstream.WithMsgID("notify/"+w.dst.Name+"/"+it.a.ID))
	if err != nil {
		w.logger.Error("dead-lettering failed; alert will be redelivered", "alert", it.a.ID, "err", err)
		w.nak(it.msg, w.d.opts.Backoff.Max)
		return
	}
	w.d.opts.Metrics.NotifyDead.WithLabelValues(w.dst.Name).Inc()
	w.logger.Error("alert dead-lettered", "alert", it.a.ID, "reason", reason)
	w.ack(it.msg)
}

func (w *worker) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		w.logger.Warn("ack failed; the alert will be redelivered and deduplicated", "err", err)
	}
}

func (w *worker) nak(m jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil {
		w.logger.Warn("nak failed; the alert will be redelivered after the ack wait", "err", err)
	}
}

// keepAlive stops JetStream redelivering alerts held for grouping.
func (w *worker) keepAlive() {
	now := w.d.opts.Now()
	if now.Sub(w.lastKeep) < w.d.opts.AckWait/3 {
		return
	}
	w.lastKeep = now
	for _, g := range w.groups {
		for _, it := range g.items {
			if err := it.msg.InProgress(); err != nil {
				w.logger.Debug("in-progress failed", "err", err)
			}
		}
	}
}

// release hands held alerts back on shutdown so that another replica can
// deliver them without waiting for the ack wait.
func (w *worker) release() {
	for k, g := range w.groups {
		for _, it := range g.items {
			w.nak(it.msg, 0)
		}
		delete(w.groups, k)
	}
}

// Delivery dedupe: a key per destination and alert ID, written after a
// successful delivery, so that a redelivered alert (after a crash between
// delivery and ack, or on another replica) is not sent twice.
func sentKey(dest, id string) string { return "sent." + hashHex(dest, id) }

func hashHex(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (w *worker) delivered(ctx context.Context, a *alert.Alert) bool {
	_, err := w.kv.Get(ctx, sentKey(w.dst.Name, a.ID))
	if err == nil {
		return true
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) && ctx.Err() == nil {
		// Unknown is treated as not delivered: a rare duplicate beats a
		// lost alert.
		w.logger.Warn("dedupe lookup failed", "err", err)
	}
	return false
}

func (w *worker) markDelivered(ctx context.Context, a *alert.Alert) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := w.kv.Put(kctx, sentKey(w.dst.Name, a.ID), []byte(w.d.opts.Now().UTC().Format(time.RFC3339))); err != nil {
		w.logger.Warn("recording delivery failed; a redelivery may repeat it", "alert", a.ID, "err", err)
	}
}

func seqOf(m jetstream.Msg) string {
	if md, err := m.Metadata(); err == nil {
		return fmt.Sprint(md.Sequence.Stream)
	}
	return "unknown"
}
