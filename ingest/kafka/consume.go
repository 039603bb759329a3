package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// Reasons of the errors metric.
const (
	reasonUnknownTopic = "unknown_topic"
	reasonAuth         = "auth"
)

// finishTimeout bounds how long a stop waits for the batch being stored.
// Within the 30 s a pod is given to stop, it leaves time to leave the
// group.
const finishTimeout = 10 * time.Second

// connectTimeout bounds one attempt to reach a broker.
const connectTimeout = 30 * time.Second

// deadLetterBytes bounds the data of a dead letter: a record may be as
// large as a JetStream message can be, and its dead letter carries
// headers too.
const deadLetterBytes = 64 << 10

type partition struct {
	topic string
	id    int32
}

// consumer is one member's poll loop and what it stored but has not
// committed yet.
type consumer struct {
	s   *Source
	pub ingest.Publisher
	cl  *kgo.Client

	// mu guards pending, which the rebalance callbacks read from
	// franz-go's goroutine.
	mu sync.Mutex
	// pending is, per partition, the last record whose events are stored
	// but whose offset is not committed: one entry per partition owned.
	pending map[partition]*kgo.Record
}

// item is one event of a batch and the record it came from.
type item struct {
	rec  *kgo.Record
	path string
}

// connect waits until a broker answers, saying why while none does: the
// group's own requests fail quietly, retried inside the client, and a
// wrong password or an unreachable endpoint would only show as silence.
// It returns false when ctx ended first.
func (c *consumer) connect(ctx context.Context) bool {
	err := backoff.Retry(ctx, c.s.opts.Retry, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		return c.cl.Ping(pctx)
	}, backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		reason := classify(err)
		c.s.metrics.IngestErrors.WithLabelValues(Kind, c.s.opts.Cluster, reason).Inc()
		msg := "no broker answers (some close the connection on a refused authentication); retrying"
		if reason == reasonAuth {
			msg = "authentication refused: check sasl (for Event Hubs: username $ConnectionString, the connection string as password); retrying"
		}
		c.s.log.Error(msg, "err", err, "reason", reason, "attempt", attempt, "retry_in", wait)
	}))
	return err == nil
}

// consume polls, stores and commits until ctx ends.
func (c *consumer) consume(ctx context.Context) {
	if !c.connect(ctx) {
		return
	}
	wait := c.s.opts.Retry.Sequence()
	for {
		fetches := c.cl.PollRecords(ctx, c.s.opts.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		failed := false
		fetches.EachError(func(topic string, p int32, err error) {
			failed = true
			c.fetchFailed(ctx, topic, p, err)
		})
		if records := fetches.Records(); len(records) > 0 {
			if !c.storeAndCommit(ctx, records) {
				return
			}
		}
		c.cl.AllowRebalance()
		if !failed {
			wait.Reset()
		} else if backoff.Wait(ctx, wait.Next()) != nil {
			return
		}
	}
}

// storeAndCommit stores and commits a batch. A stop while it does so
// lets it finish, within finishTimeout: its records would otherwise be
// read again by the next member. It returns false when the batch could
// not be stored.
func (c *consumer) storeAndCommit(ctx context.Context, records []*kgo.Record) bool {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(finishTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-fctx.Done():
		}
	})
	defer stop()
	if !c.store(fctx, records) {
		return false
	}
	c.commit(fctx)
	return true
}

func (c *consumer) fetchFailed(ctx context.Context, topic string, p int32, err error) {
	reason := classify(err)
	c.s.metrics.IngestErrors.WithLabelValues(Kind, c.s.opts.Cluster, reason).Inc()
	msg := "fetch failed; retrying"
	switch reason {
	case reasonUnknownTopic:
		msg = "topic does not exist (or may not be described); retrying"
	case reasonAuth:
		msg = "not allowed: check sasl and the topic's and group's ACLs; retrying"
	}
	c.s.log.Log(ctx, slog.LevelError, msg, "topic", topic, "partition", p, "err", err, "reason", reason)
}

// classify names an error for the errors metric.
func classify(err error) string {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return reasonUnknownTopic
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return reasonAuth
	}
	var loss *kgo.ErrDataLoss
	if errors.As(err, &loss) {
		return "data_loss"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return "kafka"
	}
	return "network"
}

// store publishes the events of records and dead-letters what holds none,
// then marks the records pending commit. It returns false only when ctx
// ended first, and then marks nothing.
func (c *consumer) store(ctx context.Context, records []*kgo.Record) bool {
	var (
		batch []audit.Raw
		items []item
	)
	for _, r := range records {
		value := bytes.TrimSpace(r.Value)
		b, err := provider.Decode(value)
		if err != nil {
			if !errors.Is(err, provider.ErrNotAudit) && !c.deadLetter(ctx, where(r, ""), err.Error(), value) {
				return false
			}
			continue
		}
		for _, it := range b.Items {
			switch {
			case it.Err == nil:
				batch = append(batch, it.Raw)
				items = append(items, item{rec: r, path: it.Path})
			case errors.Is(it.Err, provider.ErrNotAudit):
				// Another category of the same diagnostic setting, or
				// another service's entry: not for vigil.
			default:
				reason := it.Err.Error()
				if b.Format != provider.FormatEvent {
					reason = b.Format.Name() + ": " + reason
				}
				if !c.deadLetter(ctx, where(r, it.Path), reason, value[it.Offset:]) {
					return false
				}
			}
		}
	}
	if len(batch) > 0 {
		err := c.retry(ctx, "publish", func(ctx context.Context) error {
			return ingest.Store(ctx, c.pub, batch, func(ctx context.Context, i int, reason string, sample []byte) error {
				return c.pub.DeadLetter(ctx, where(items[i].rec, items[i].path), reason, sample)
			})
		}, 0)
		if err != nil {
			return false
		}
	}
	var newest time.Time
	c.mu.Lock()
	for _, r := range records {
		c.pending[partition{r.Topic, r.Partition}] = r
		if r.Timestamp.After(newest) {
			newest = r.Timestamp
		}
	}
	c.mu.Unlock()
	// Kafka's record time: when the producer (Event Hubs, Fluent Bit)
	// wrote it, a little after the apiserver logged the event.
	c.s.metrics.IngestLastEvent.WithLabelValues(Kind, c.s.opts.Cluster).Set(float64(newest.UnixMilli()) / 1e3)
	c.s.metrics.IngestLag.WithLabelValues(Kind, c.s.opts.Cluster).Set(time.Since(newest).Seconds())
	return true
}

// where names a record, or an item of it, in a dead letter: enough to
// read it again with kcat -t topic -p partition -o offset -c 1.
func where(r *kgo.Record, path string) string {
	w := fmt.Sprintf("kafka:%s/%d/%d", r.Topic, r.Partition, r.Offset)
	if path != "" {
		w += ":" + path
	}
	return w
}

func (c *consumer) deadLetter(ctx context.Context, where, reason string, data []byte) bool {
	c.s.log.Warn("dead-lettering record", "where", where, "bytes", len(data), "reason", reason)
	if len(data) > deadLetterBytes {
		reason = fmt.Sprintf("%s (data is the first %d of %d bytes)", reason, deadLetterBytes, len(data))
		data = data[:deadLetterBytes]
	}
	err := c.retry(ctx, "dead-letter", func(ctx context.Context) error {
		return c.pub.DeadLetter(ctx, where, reason, data)
	}, 0)
	return err == nil
}

// commit commits the pending offsets. A commit that keeps failing is left
// to the next batch's, or to the records being read again.
func (c *consumer) commit(ctx context.Context) {
	c.mu.Lock()
	records := make([]*kgo.Record, 0, len(c.pending))
	for _, r := range c.pending {
		records = append(records, r)
	}
	c.mu.Unlock()
	if len(records) == 0 {
		return
	}
	err := c.retry(ctx, "commit", func(ctx context.Context) error {
		return c.cl.CommitRecords(ctx, records...)
	}, commitAttempts)
	if err != nil {
		return
	}
	c.mu.Lock()
	for _, r := range records {
		p := partition{r.Topic, r.Partition}
		if c.pending[p] == r {
			delete(c.pending, p)
		}
	}
	c.mu.Unlock()
}

// revoked commits what was stored of the partitions taken away, before
// another member starts reading them from the committed offset. With
// BlockRebalanceOnPoll it runs between batches, so nothing of these
// partitions is being stored.
func (c *consumer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.s.log.Info("partitions revoked", "partitions", revoked)
	c.commit(ctx)
	c.forget(revoked)
}

// lost forgets the pending offsets of partitions the group already gave
// to another member: committing them could move its offsets back.
func (c *consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.s.log.Warn("partitions lost; their uncommitted records are read again by their new owner", "partitions", lost)
	c.forget(lost)
}

func (c *consumer) forget(parts map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ids := range parts {
		for _, id := range ids {
			delete(c.pending, partition{topic, id})
		}
	}
}

// retry runs op until it succeeds, ctx ends, or attempts (when positive)
// are spent, logging every failure.
func (c *consumer) retry(ctx context.Context, what string, op func(context.Context) error, attempts int) error {
	opts := []backoff.Option{backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		if what == "commit" {
			c.s.metrics.IngestErrors.WithLabelValues(Kind, c.s.opts.Cluster, "commit").Inc()
		}
		c.s.log.Error(what+" failed; retrying", "err", err, "attempt", attempt, "retry_in", wait)
	})}
	if attempts > 0 {
		opts = append(opts, backoff.Attempts(attempts))
	}
	err := backoff.Retry(ctx, c.s.opts.Retry, op, opts...)
	if err != nil && ctx.Err() == nil {
		c.s.log.Error(what+" failed; giving up", "err", err)
	}
	return err
}
