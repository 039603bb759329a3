package gke

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// maxDeadLetterBytes is the most of a message a dead letter keeps whole;
// of a larger one (Pub/Sub allows 10 MB, more than a NATS message) it
// keeps the first ingest.SampleBytes.
const maxDeadLetterBytes = 256 << 10

// handle stores the events of one message and acknowledges it; what is
// not a usable event is dead-lettered first. A message whose events could
// not be stored before ctx ended is nacked, for Pub/Sub to deliver again.
func (s *Source) handle(ctx context.Context, b *batcher, m *pubsub.Message) {
	batch, err := provider.Decode(m.Data)
	var (
		raws []audit.Raw
		bad  []string
	)
	if err != nil {
		bad = append(bad, err.Error())
	}
	for _, it := range batch.Items {
		if it.Err == nil {
			raws = append(raws, it.Raw)
		} else {
			bad = append(bad, it.ItemError().Error())
		}
	}
	if len(bad) > 0 && !s.deadLetter(ctx, b, m, batch.Format, bad) {
		m.Nack()
		return
	}
	if len(raws) > 0 && !b.store(ctx, raws) {
		m.Nack()
		return
	}
	m.Ack()
}

// maxReasons is how many of the bad items of one message its dead letter
// names.
const maxReasons = 10

// deadLetter stores, once, a message that is not a usable event or has
// parts that are not, with why (bad); false when ctx ended first.
func (s *Source) deadLetter(ctx context.Context, b *batcher, m *pubsub.Message, format provider.Format, bad []string) bool {
	where := fmt.Sprintf("%s:%s:%s", Kind, s.opts.Subscription, m.ID)
	reason := strings.Join(bad[:min(len(bad), maxReasons)], "; ")
	if len(bad) > maxReasons {
		reason += fmt.Sprintf("; and %d more", len(bad)-maxReasons)
	}
	if format != "" {
		reason = format.Name() + ": " + reason
	}
	data := m.Data
	s.log.Warn("dead-lettering message", "where", where, "bytes", len(data), "reason", reason)
	if len(data) > maxDeadLetterBytes {
		reason = fmt.Sprintf("%s; data is the first %d of its %d bytes", reason, ingest.SampleBytes, len(data))
		data = data[:ingest.SampleBytes]
	}
	err := s.retry(ctx, "dead-letter", func(ctx context.Context) error {
		return b.pub.DeadLetter(ctx, where, reason, data)
	})
	return err == nil
}

// retry runs op until it succeeds or ctx ends, logging every failure. It
// returns an error only when ctx ended.
func (s *Source) retry(ctx context.Context, what string, op func(context.Context) error) error {
	return backoff.Retry(ctx, s.opts.Retry, op, backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		s.log.Log(ctx, slog.LevelError, what+" failed; retrying", "err", err, "attempt", attempt, "retry_in", wait)
	}))
}

// eventTime is when an event happened, for the lag metrics; zero when it
// does not say.
func eventTime(r audit.Raw) time.Time {
	var ev struct {
		StageTimestamp time.Time `json:"stageTimestamp"`
	}
	_ = json.Unmarshal(r.Data, &ev)
	return ev.StageTimestamp
}

// classify names what kind of failure a Receive error is.
func classify(err error) string {
	// FromError finds a status wrapped in err as well.
	st, ok := status.FromError(err)
	if !ok {
		return ingest.ReasonRequest
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		return ingest.ReasonThrottled
	case codes.NotFound:
		return ingest.ReasonNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		return ingest.ReasonAccessDenied
	case codes.Unavailable, codes.Internal, codes.DeadlineExceeded, codes.Unknown, codes.Aborted:
		return ingest.ReasonService
	}
	return ingest.ReasonRequest
}

// hint says what to check for a failure that only the operator can fix.
func hint(reason string) string {
	switch reason {
	case ingest.ReasonNotFound:
		return ": no such subscription (create it on the log sink's topic, or fix project and subscription)"
	case ingest.ReasonAccessDenied:
		return ": grant roles/pubsub.subscriber on the subscription to the pod's service account (workload identity)"
	}
	return ""
}
