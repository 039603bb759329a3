package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// minFetchWait keeps a loop with a group overdue, or a claim being
// retried, from spinning on empty fetches.
const minFetchWait = 20 * time.Millisecond

// item is one alert, the message that carried it, and what the stages
// learnt about it on the way.
type item struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata // nil when the message carries none
	a    *alert.Alert
	// route is the index of the route that sends the alert to this
	// destination (-1: no routes), and grouping that route's; both set
	// by the route stage.
	route    int
	grouping grouping
}

// seq is the alert's sequence on the ALERTS stream, 0 when unknown.
func (it item) seq() uint64 {
	if it.meta == nil {
		return 0
	}
	return it.meta.Sequence.Stream
}

// attempts counts this delivery of the alert to the destination too.
func (it item) attempts() uint64 {
	if it.meta == nil {
		return 1
	}
	return it.meta.NumDelivered
}

// age is how long ago the alert was stored.
func (it item) age(now time.Time) time.Duration {
	if it.meta == nil {
		return 0
	}
	return now.Sub(it.meta.Timestamp)
}

// A stage takes alerts of one fetch and returns those that go on to the
// next stage. Each alert it does not return it has settled or holds.
type stage interface {
	exec(ctx context.Context, items []item) []item
}

// pipeline delivers to one destination. It runs in one goroutine —
// fetching, the stages, grouping timers and delivery all happen in its
// loop — so the stages' state needs no locks.
//
// Fetched alerts go through the intake stages in order: route, dedupe,
// silence, group. What the group stage passes on, or later hands on as a due
// group, is delivered: rate limit, send (notify with retry), mark
// delivered.
type pipeline struct {
	cons       jetstream.Consumer
	fetchBatch int
	fetchWait  time.Duration
	ackWait    time.Duration
	batch      bool
	now        func() time.Time
	settle     *settler
	logger     *slog.Logger

	// intake are route, dedupe, silence and group, in that order.
	intake []stage
	group  *grouper
	limit  *rateLimit
	send   *send
	mark   *markDelivered
}

func (p *pipeline) run(ctx context.Context) {
	defer p.group.release()
	for ctx.Err() == nil {
		p.handle(ctx, p.fetch(ctx, p.wait()))
		p.group.flush(ctx, p.deliver)
		p.group.keepAlive()
	}
}

// wait is how long the next fetch may wait for its first alert: not past
// the time the next group is due and, while a receiver asked for a pause,
// for the pause but no longer than keeps the held alerts alive.
func (p *pipeline) wait() time.Duration {
	wait := p.fetchWait
	if next := p.group.next(); !next.IsZero() {
		wait = min(wait, next.Sub(p.now()))
	}
	if u := p.limit.paused(); u > 0 && u > wait {
		// Fetching more during the pause would only hold alerts in
		// memory.
		wait = min(u, p.ackWait/3)
	}
	return max(wait, minFetchWait)
}

// fetch pulls up to a batch, waiting at most wait for the first message.
func (p *pipeline) fetch(ctx context.Context, wait time.Duration) []item {
	if p.limit.paused() > 0 {
		_ = backoff.Wait(ctx, wait)
		return nil
	}
	// Take what is waiting without blocking; when nothing is, block for
	// the first alert only, so that one alert is not held for a batch
	// to fill, then take whatever came with it.
	items, err := p.collect(ctx, func() (jetstream.MessageBatch, error) { return p.cons.FetchNoWait(p.fetchBatch) })
	if err == nil && len(items) == 0 {
		fctx, cancel := context.WithTimeout(ctx, wait)
		items, err = p.collect(ctx, func() (jetstream.MessageBatch, error) {
			return p.cons.Fetch(1, jetstream.FetchContext(fctx))
		})
		cancel()
		if err == nil && len(items) > 0 && p.fetchBatch > 1 {
			more, _ := p.collect(ctx, func() (jetstream.MessageBatch, error) { return p.cons.FetchNoWait(p.fetchBatch - 1) })
			items = append(items, more...)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Warn("fetching alerts failed", "err", err)
			_ = backoff.Wait(ctx, wait)
		}
		return nil
	}
	return items
}

// collect runs one fetch and decodes what it returns; undecodable alerts
// are dead-lettered.
func (p *pipeline) collect(ctx context.Context, fetch func() (jetstream.MessageBatch, error)) ([]item, error) {
	batch, err := fetch()
	if err != nil {
		return nil, err
	}
	var items []item
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			meta = nil // not from a consumer; never the case on ALERTS
		}
		a := new(alert.Alert)
		if err := json.Unmarshal(msg.Data(), a); err != nil || a.ID == "" {
			reason := "undecodable alert"
			if err != nil {
				reason += ": " + err.Error()
			}
			id := "seq-unknown"
			if meta != nil {
				id = "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
			}
			p.settle.deadLetter(ctx, msg, id, reason)
			continue
		}
		items = append(items, item{msg: msg, meta: meta, a: a})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		p.logger.Debug("fetch ended early", "err", err)
	}
	return items, nil
}

// handle passes fetched alerts through the intake stages and delivers
// what comes out: in one notification to a destination that takes
// batches, one by one to the others.
func (p *pipeline) handle(ctx context.Context, items []item) {
	for _, s := range p.intake {
		if len(items) == 0 {
			return
		}
		items = s.exec(ctx, items)
	}
	if len(items) == 0 {
		return
	}
	if p.batch {
		p.deliver(ctx, items)
		return
	}
	for _, it := range items {
		if ctx.Err() != nil {
			p.settle.nak(it.msg, 0)
			continue
		}
		p.deliver(ctx, []item{it})
	}
}

// deliver sends items as one notification through the delivery stages,
// which settle every item, and reports whether it was delivered.
func (p *pipeline) deliver(ctx context.Context, items []item) bool {
	if err := p.limit.wait(ctx); err != nil {
		p.settle.nakAll(items)
		return false
	}
	if err := p.send.exec(ctx, items); err != nil {
		p.limit.honour(err)
		return false
	}
	p.mark.exec(ctx, items)
	return true
}
