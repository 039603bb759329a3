package eks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// requestTimeout bounds one CloudWatch request: a connection that hangs
// is retried rather than waited on for ever.
const requestTimeout = 30 * time.Second

// poller reads the log group while the lease is held.
type poller struct {
	s    *Source
	pub  ingest.Publisher
	seen *seen
	// from is the cursor's timestamp when polling started: an event before
	// it may have been read before a restart, so only one after it can be
	// told late.
	from int64
}

// poll reads from the saved cursor until ctx (the lease) ends.
func (s *Source) poll(ctx context.Context, pub ingest.Publisher) {
	p := &poller{s: s, pub: pub}
	if !p.load(ctx) {
		return
	}
	s.checkStreams(ctx)
	for {
		p.pass(ctx)
		if backoff.Wait(ctx, s.opts.PollInterval) != nil {
			return
		}
	}
}

// load reads the cursor, another replica's or this one's from before a
// restart; without one, reading starts where StartAt says.
func (p *poller) load(ctx context.Context) bool {
	var data []byte
	err := p.retry(ctx, "read cursor", func(ctx context.Context) error {
		var err error
		data, err = p.s.cursors.Load(ctx, p.s.key)
		return err
	})
	if err != nil {
		return false
	}
	c := cursor{}
	switch {
	case data != nil:
		if c, err = decodeCursor(data); err != nil {
			// Never written by vigil: reading from now loses less than
			// stopping would.
			p.s.log.Error("cursor unreadable; reading from now", "key", p.s.key, "err", err)
			c = cursor{Timestamp: time.Now().UnixMilli()}
		}
	case p.s.opts.StartAt == StartEnd:
		c.Timestamp = time.Now().UnixMilli()
	}
	p.s.log.Info("reading from cursor", "key", p.s.key, "timestamp", time.UnixMilli(c.Timestamp).UTC(), "events_at_it", len(c.EventIDs))
	p.seen, p.from = restore(c), c.Timestamp
	return true
}

// pass pages through FilterLogEvents from the overlap window before the
// cursor to the newest event, storing each page before the next.
func (p *poller) pass(ctx context.Context) {
	in := &cloudwatchlogs.FilterLogEventsInput{
		LogGroupName:        aws.String(p.s.opts.LogGroup),
		LogStreamNamePrefix: aws.String(p.s.opts.StreamPrefix),
		StartTime:           aws.Int64(max(0, p.seen.newest-p.s.opts.Overlap.Milliseconds())),
	}
	for {
		var out *cloudwatchlogs.FilterLogEventsOutput
		err := p.retry(ctx, "FilterLogEvents", func(ctx context.Context) error {
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			var err error
			out, err = p.s.api.FilterLogEvents(rctx, in)
			return err
		})
		if err != nil {
			return
		}
		if !p.store(ctx, out.Events) {
			return
		}
		// An empty page with a token is CloudWatch still searching: only
		// a page without one ends the pass.
		if out.NextToken == nil {
			return
		}
		in.NextToken = out.NextToken
	}
}

// read is one event of a page that is new.
type read struct {
	id, stream string
	ts         int64
	raw        audit.Raw
}

// store publishes the new events of a page, dead-letters those that are
// not audit events, then saves the cursor past them. It returns false
// only when ctx ended first.
func (p *poller) store(ctx context.Context, events []types.FilteredLogEvent) bool {
	var (
		batch []audit.Raw
		reads []read
		dead  int
	)
	for _, ev := range events {
		id, ts := aws.ToString(ev.EventId), aws.ToInt64(ev.Timestamp)
		if id == "" || p.seen.has(id) {
			continue
		}
		if ts > p.from && ts < p.seen.newest {
			p.s.metrics.IngestLateEvents.WithLabelValues(Kind, p.s.opts.Cluster).Inc()
		}
		r := read{id: id, stream: aws.ToString(ev.LogStreamName), ts: ts}
		msg := []byte(aws.ToString(ev.Message))
		raw, err := audit.ParseRaw(msg)
		if err != nil {
			reason := err.Error()
			if provider.CloudWatchTruncated(msg) {
				p.s.metrics.IngestTruncated.WithLabelValues(Kind, p.s.opts.Cluster).Inc()
				reason = fmt.Sprintf("truncated by CloudWatch Logs to %d bytes (events over its size limit are cut): not complete JSON", len(msg))
			}
			if !p.deadLetter(ctx, r, reason, msg) {
				return false
			}
			p.seen.add(id, ts, true)
			dead++
			continue
		}
		r.raw = raw
		batch = append(batch, raw)
		reads = append(reads, r)
	}
	if len(batch) > 0 {
		err := p.retry(ctx, "publish", func(ctx context.Context) error {
			return ingest.Store(ctx, p.pub, batch, func(ctx context.Context, i int, reason string, sample []byte) error {
				return p.pub.DeadLetter(ctx, p.where(reads[i]), reason, sample)
			})
		})
		if err != nil {
			return false
		}
	}
	if len(batch) == 0 && dead == 0 {
		return true
	}
	var newest int64
	for _, r := range reads {
		p.seen.add(r.id, r.ts, false)
		newest = max(newest, r.ts)
	}
	if newest > 0 {
		t := time.UnixMilli(newest)
		p.s.metrics.IngestLastEvent.WithLabelValues(Kind, p.s.opts.Cluster).Set(float64(newest) / 1e3)
		p.s.metrics.IngestLag.WithLabelValues(Kind, p.s.opts.Cluster).Set(time.Since(t).Seconds())
	}
	p.seen.forget(p.s.opts.Overlap.Milliseconds())
	return p.save(ctx)
}

// save writes the cursor. Saving only after the page is stored is what
// makes a restart lose nothing: at worst it reads the page again.
func (p *poller) save(ctx context.Context) bool {
	data, err := json.Marshal(p.seen.cursor(p.s.opts.LogGroup, p.s.opts.StreamPrefix))
	if err != nil {
		panic(fmt.Sprintf("eks: cursor does not encode: %v", err)) // strings and numbers only
	}
	err = p.retry(ctx, "save cursor", func(ctx context.Context) error {
		return p.s.cursors.Save(ctx, p.s.key, data)
	})
	return err == nil
}

// where names an event in a dead letter: log group, stream and event id,
// enough to find it with `aws logs filter-log-events`.
func (p *poller) where(r read) string {
	return fmt.Sprintf("eks:%s:%s:%s", p.s.opts.LogGroup, r.stream, r.id)
}

func (p *poller) deadLetter(ctx context.Context, r read, reason string, msg []byte) bool {
	p.s.log.Warn("dead-lettering event", "stream", r.stream, "event_id", r.id, "bytes", len(msg), "reason", reason)
	err := p.retry(ctx, "dead-letter", func(ctx context.Context) error {
		return p.pub.DeadLetter(ctx, p.where(r), reason, msg)
	})
	return err == nil
}

// retry runs op until it succeeds or ctx ends, logging every failure;
// CloudWatch's are also counted by reason. It returns an error only when
// ctx ended.
func (p *poller) retry(ctx context.Context, what string, op func(context.Context) error) error {
	cloud := what == "FilterLogEvents" || what == "DescribeLogStreams"
	return backoff.Retry(ctx, p.s.opts.Retry, op, backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		level := slog.LevelError
		args := []any{"err", err, "attempt", attempt, "retry_in", wait}
		if cloud {
			reason := classify(err)
			p.s.metrics.IngestErrors.WithLabelValues(Kind, p.s.opts.Cluster, reason).Inc()
			if reason == ingest.ReasonThrottled {
				level = slog.LevelWarn
			}
			args = append(args, "reason", reason)
		}
		p.s.log.Log(ctx, level, what+" failed; retrying", args...)
	}))
}

// checkStreams says at once what a first poll would only show as
// silence: the log group is missing (audit logging not enabled), no
// stream has the prefix yet, or the role may not read the group. It only
// logs: polling goes on either way, and picks the streams up once they
// exist.
func (s *Source) checkStreams(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	out, err := s.api.DescribeLogStreams(rctx, &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName:        aws.String(s.opts.LogGroup),
		LogStreamNamePrefix: aws.String(s.opts.StreamPrefix),
		Limit:               aws.Int32(1),
	})
	switch {
	case ctx.Err() != nil:
	case err != nil && classify(err) == ingest.ReasonNotFound:
		s.log.Error("log group not found: enable the cluster's audit log (aws eks update-cluster-config --logging '{\"clusterLogging\":[{\"types\":[\"audit\"],\"enabled\":true}]}'), or set log_group", "err", err)
	case err != nil && classify(err) == ingest.ReasonAccessDenied:
		s.log.Error("not allowed to read the log group: grant logs:FilterLogEvents and logs:DescribeLogStreams on it", "err", err)
	case err != nil:
		s.log.Warn("could not list the log streams", "err", err)
	case len(out.LogStreams) == 0:
		s.log.Warn("no log stream has the prefix yet; is the cluster's audit log enabled?", "stream_prefix", s.opts.StreamPrefix)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		s.metrics.IngestErrors.WithLabelValues(Kind, s.opts.Cluster, classify(err)).Inc()
	}
}
