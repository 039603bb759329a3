package gke

import (
	"context"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// job is the events of one message, waiting to be stored.
type job struct {
	raws []audit.Raw
	// done gets nil once they are stored, or ctx's error; buffered, so
	// that the batcher never waits for a handler that gave up.
	done chan error
}

// batcher stores the events of the messages in hand together: it takes
// what is waiting when it is free, up to MaxBatchEvents, and publishes it
// in one go. It waits for nothing more, so a lone message is not held back.
type batcher struct {
	s    *Source
	pub  ingest.Publisher
	jobs chan job
	// newest is the time of the newest event stored: the last-event
	// gauge does not go back for a message delivered late.
	newest time.Time
}

func newBatcher(s *Source, pub ingest.Publisher) *batcher {
	return &batcher{s: s, pub: pub, jobs: make(chan job)}
}

// store hands raws to the batcher and waits until they are stored; false
// when ctx ended first.
func (b *batcher) store(ctx context.Context, raws []audit.Raw) bool {
	j := job{raws: raws, done: make(chan error, 1)}
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		return false
	}
	select {
	case err := <-j.done:
		return err == nil
	case <-ctx.Done():
		return false
	}
}

// run publishes batches until ctx is done.
func (b *batcher) run(ctx context.Context) {
	for {
		var jobs []job
		select {
		case j := <-b.jobs:
			jobs = append(jobs, j)
		case <-ctx.Done():
			return
		}
		events := len(jobs[0].raws)
	more:
		for events < b.s.opts.MaxBatchEvents {
			select {
			case j := <-b.jobs:
				jobs = append(jobs, j)
				events += len(j.raws)
			default:
				break more
			}
		}
		err := b.publish(ctx, jobs, events)
		for _, j := range jobs {
			j.done <- err
		}
	}
}

// publish stores the events of jobs, dead-lettering those too large to
// store, and retries until they are or ctx ends.
func (b *batcher) publish(ctx context.Context, jobs []job, events int) error {
	batch := make([]audit.Raw, 0, events)
	for _, j := range jobs {
		batch = append(batch, j.raws...)
	}
	err := b.s.retry(ctx, "publish", func(ctx context.Context) error {
		return ingest.Store(ctx, b.pub, batch, func(ctx context.Context, i int, reason string, sample []byte) error {
			return b.pub.DeadLetter(ctx, Kind+":"+b.s.opts.Subscription+":"+batch[i].MsgID(), reason, sample)
		})
	})
	if err != nil {
		return err
	}
	var newest time.Time
	for _, r := range batch {
		if t := eventTime(r); t.After(newest) {
			newest = t
		}
	}
	if newest.IsZero() {
		return nil
	}
	b.s.metrics.IngestLag.WithLabelValues(Kind, b.s.opts.Cluster).Set(time.Since(newest).Seconds())
	if newest.After(b.newest) {
		b.newest = newest
		b.s.metrics.IngestLastEvent.WithLabelValues(Kind, b.s.opts.Cluster).Set(float64(newest.UnixMilli()) / 1e3)
	}
	return nil
}
