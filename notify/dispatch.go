package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/silence"
)

// silencesStallReport is how often a notifier still waiting to read the
// silences says so, at error level.
const silencesStallReport = 30 * time.Second

// Dispatcher reads the ALERTS stream with one durable consumer per
// destination and delivers to each through its own pipeline of stages, so
// a slow or failing destination never delays another. The route stage is
// shared: each alert is routed once for all destinations.
type Dispatcher struct {
	js     jetstream.JetStream
	logger *slog.Logger
	opts   Options
	dests  []Destination
	router *router
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
	names := make([]string, 0, len(dests))
	for _, dc := range dests {
		c := ConsumerName(dc.Name)
		if other, dup := consumers[c]; dup {
			return nil, fmt.Errorf("notify: destinations %q and %q would share the consumer %s; rename one", other, dc.Name, c)
		}
		consumers[c] = dc.Name
		names = append(names, dc.Name)
	}
	for _, dc := range dests {
		dc, err := dc.withDefaults(o)
		if err != nil {
			return nil, err
		}
		d.dests = append(d.dests, dc)
	}
	if d.router, err = newRouter(names, routes, logger); err != nil {
		return nil, err
	}
	return d, nil
}

// SetRoutes replaces the routing table while the dispatcher runs. The
// routes may only name the destinations it was built with: adding a
// destination needs a restart, since each has its own consumer and client.
func (d *Dispatcher) SetRoutes(routes []Route) error { return d.router.set(routes) }

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
	store, err := silence.Open(ctx, d.js)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// The watch stops with the pipelines, or when Run fails.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	silences := store.NewSet(d.opts.Now, d.logger.With("stage", "silence"))
	wg.Go(func() { silences.Run(wctx) })
	// Silences already in force hold for the first alerts fetched too.
	// Until they are read nothing is delivered, which must not pass
	// unnoticed: a deployment whose NATS account cannot read the bucket
	// would otherwise stop every destination with warnings only.
	stalled := time.NewTicker(silencesStallReport)
	defer stalled.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return nil
		case <-silences.Ready():
			waiting = false
		case <-stalled.C:
			d.logger.Error("no alert is delivered until the silences can be read; check that NATS serves the bucket and this account may read it",
				"bucket", bus.BucketSilences, "stream", bus.KVStream(bus.BucketSilences))
		}
	}
	pipelines := make([]*pipeline, 0, len(d.dests))
	for _, dst := range d.dests {
		cons, err := bus.EnsureConsumer(ctx, d.js, bus.StreamAlerts, consumerConfig(dst.Name, d.opts.AckWait))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("notify: destination %q: %w", dst.Name, err)
		}
		pipelines = append(pipelines, d.pipeline(dst, cons, kv, silences, store))
	}
	defer func() {
		for _, dst := range d.dests {
			if c, ok := dst.Notifier.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}()
	for _, p := range pipelines {
		wg.Go(func() { p.run(ctx) })
	}
	wg.Wait()
	return nil
}

// consumerConfig is a destination's durable consumer.
func consumerConfig(dest string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(dest),
		Description:   "vigil notifications to " + dest,
		FilterSubject: bus.SubjectAlertsPrefix + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// Attempts are counted and bounded here, so that the last one
		// ends in the dead-letter stream instead of silently stopping.
		MaxDeliver:    -1,
		MaxAckPending: DefaultMaxAckPending,
	}
}

// pipeline builds a destination's stages.
func (d *Dispatcher) pipeline(dst Destination, cons jetstream.Consumer, kv jetstream.KeyValue, silences *silence.Set, store *silence.Store) *pipeline {
	o, m := d.opts, d.opts.Metrics
	logger := d.logger.With("destination", dst.Name)
	settle := &settler{
		js: d.js, dest: dst.Name, retryDeadLetter: o.Backoff.Max,
		dead: m.NotifyDead.WithLabelValues(dst.Name), logger: logger,
	}
	group := &grouper{
		kv: kv, dest: dst.Name, settle: settle, now: o.Now, keepEvery: o.AckWait / 3,
		backoff: o.Backoff, logger: logger, groups: map[string]*group{},
	}
	return &pipeline{
		cons:       cons,
		fetchBatch: fetchBatch(o.FetchBatch, dst.RateLimit, o.AckWait),
		fetchWait:  o.FetchWait,
		ackWait:    o.AckWait,
		batch:      dst.Batch,
		now:        o.Now,
		settle:     settle,
		logger:     logger,
		intake: []stage{
			&routeStage{router: d.router, dest: dst.Name, settle: settle},
			&dedupe{kv: kv, dest: dst.Name, settle: settle, duplicates: m.NotifyDuplicates.WithLabelValues(dst.Name), logger: logger},
			&silenceStage{
				set: silences, store: store, dest: dst.Name, silenced: m.AlertsSilenced, settle: settle,
				backoff: o.Backoff, now: o.Now, logger: logger,
			},
			group,
		},
		group: group,
		limit: newRateLimit(dst.RateLimit, o.Now),
		send: &send{
			notifier: dst.Notifier, timeout: dst.Timeout, maxAttempts: dst.MaxAttempts, maxAge: o.MaxAge,
			backoff: o.Backoff, now: o.Now, settle: settle, failures: m.NotifyFailures.WithLabelValues(dst.Name), logger: logger,
		},
		mark: &markDelivered{
			kv: kv, dest: dst.Name, settle: settle, delivered: m.NotifyDelivered.WithLabelValues(dst.Name), now: o.Now, logger: logger,
		},
	}
}
