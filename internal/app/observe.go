package app

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/quiet"
)

// consumerPollInterval is how often consumer lag is sampled.
const consumerPollInterval = 5 * time.Second

// countingPublisher is a SegmentPublisher that says what JetStream did
// with each event: stored, or dropped as a copy of one it held.
type countingPublisher interface {
	ingest.SegmentPublisher
	PublishCounted(ctx context.Context, batch []audit.Raw) (bus.Stored, error)
	PublishSegmentsCounted(ctx context.Context, batch []audit.Raw, ends []int, ids []string) (bus.Stored, error)
}

// meteredPublisher counts what a source stores, and what JetStream dropped
// as already stored, and how long JetStream took to acknowledge it, and
// tells the source's silence watch. Every source publishes through one.
type meteredPublisher struct {
	countingPublisher
	m       *metrics.Metrics
	source  string
	cluster string
	watch   *quiet.Watch
	// eventTimes sets the lag and last event metrics from the newest
	// event of each batch stored.
	eventTimes bool
	// newest is the own time of the newest event stored: the logs of a
	// glob, and the webhook's concurrent requests, store older events
	// after newer ones.
	mu     sync.Mutex
	newest time.Time
}

func newMeteredPublisher(pub countingPublisher, m *metrics.Metrics, source, cluster string, watch *quiet.Watch, eventTimes bool) *meteredPublisher {
	// Shown at 0 from the start, so that an increase is seen from the
	// first event.
	m.IngestEvents.WithLabelValues(source, cluster)
	m.IngestDuplicates.WithLabelValues(source, cluster)
	return &meteredPublisher{countingPublisher: pub, m: m, source: source, cluster: cluster, watch: watch, eventTimes: eventTimes}
}

func (p *meteredPublisher) Publish(ctx context.Context, batch []audit.Raw) error {
	start := time.Now()
	stored, err := p.PublishCounted(ctx, batch)
	return p.observe(start, batch, stored, err)
}

func (p *meteredPublisher) PublishSegments(ctx context.Context, batch []audit.Raw, ends []int, ids []string) error {
	start := time.Now()
	stored, err := p.PublishSegmentsCounted(ctx, batch, ends, ids)
	return p.observe(start, batch, stored, err)
}

// observe counts what a publish of batch that started at start stored, and
// what JetStream dropped as copies of events it held. Counted even when
// the publish failed: what it stored is a copy on the retry.
func (p *meteredPublisher) observe(start time.Time, batch []audit.Raw, stored bus.Stored, err error) error {
	p.m.IngestEvents.WithLabelValues(p.source, p.cluster).Add(float64(stored.Events))
	p.m.IngestDuplicates.WithLabelValues(p.source, p.cluster).Add(float64(stored.Duplicates))
	if _, _, ok := ingest.TooLarge(err); err != nil && !ok {
		// The source retries; counted here, a JetStream that cannot
		// store shows per source whatever the source is.
		p.m.IngestErrors.WithLabelValues(p.source, p.cluster, ingest.ReasonPublish).Inc()
		return err
	}
	now := time.Now()
	p.m.PublishDuration.WithLabelValues(p.source).Observe(now.Sub(start).Seconds())
	// A source whose events another one stored first still hears from its
	// apiserver: duplicates are no silence.
	if stored.Events+stored.Duplicates > 0 {
		p.watch.Saw(now)
		if p.eventTimes {
			p.times(now, batch[len(batch)-1])
		}
	}
	return err
}

// times sets the lag and last event metrics from the last event of a
// batch, the newest a log or an EventList holds: decoding one event per
// batch costs little beside storing it.
func (p *meteredPublisher) times(now time.Time, last audit.Raw) {
	ev, err := audit.Decode(last.Data)
	if err != nil {
		return
	}
	t := ev.StageTimestamp
	if t.IsZero() {
		t = ev.Time()
	}
	if t.IsZero() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.After(p.newest) {
		p.newest = t
		p.m.IngestLastEvent.WithLabelValues(p.source, p.cluster).Set(float64(t.UnixNano()) / 1e9)
		p.m.IngestLag.WithLabelValues(p.source, p.cluster).Set(now.Sub(t).Seconds())
	}
}

func (p *meteredPublisher) DeadLetter(ctx context.Context, source, reason string, data []byte) error {
	err := p.countingPublisher.DeadLetter(ctx, source, reason, data)
	if err == nil {
		p.m.IngestMalformed.WithLabelValues(p.source).Inc()
		p.m.DeadLetters.WithLabelValues("ingest").Inc()
	}
	return err
}

// watchConsumers samples the lag of the durable consumers (the engine's and
// each destination's) until ctx is done.
func (a *App) watchConsumers(ctx context.Context, js jetstream.JetStream) error {
	t := time.NewTicker(consumerPollInterval)
	defer t.Stop()
	for {
		for _, stream := range []string{bus.StreamAudit, bus.StreamAlerts} {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				continue
			}
			for info := range s.ListConsumers(ctx).Info() {
				a.metrics.ConsumerPending.WithLabelValues(info.Name).Set(float64(info.NumPending))
				a.metrics.ConsumerAckPending.WithLabelValues(info.Name).Set(float64(info.NumAckPending))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
