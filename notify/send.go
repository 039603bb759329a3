package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// send is the notify-with-retry stage: it sends one notification within
// the destination's timeout and, when that fails, decides for each of its
// alerts whether to try again later or to give up. Retries are
// JetStream's delayed redeliveries, so that the count of attempts
// survives a restart.
type send struct {
	notifier    Notifier
	timeout     time.Duration
	maxAttempts int
	maxAge      time.Duration
	backoff     backoff.Policy
	now         func() time.Time
	settle      *settler
	failures    prometheus.Counter
	logger      *slog.Logger
}

// exec returns nil once the receiver accepted the notification. Otherwise
// it has settled every item — handed back, at once when the notifier is
// stopping, or after a backoff, or dead-lettered — and returns why.
func (s *send) exec(ctx context.Context, items []item) error {
	alerts := make([]*alert.Alert, len(items))
	for i, it := range items {
		alerts[i] = it.a
	}
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	retry, err := s.notifier.Notify(sctx, alerts...)
	cancel()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// Stopping: not the receiver's fault, so no attempt is spent.
		s.settle.nakAll(items)
		return ctx.Err()
	}
	s.failures.Inc()
	s.logger.Warn("delivery failed", "alerts", len(items), "retry", retry, "err", err)
	after, hasAfter := RetryAfter(err)
	for _, it := range items {
		attempts, age := it.attempts(), it.age(s.now())
		switch {
		case !retry:
			s.settle.deadLetter(ctx, it.msg, it.a.ID, "not retryable: "+err.Error())
		case attempts >= uint64(s.maxAttempts):
			s.settle.deadLetter(ctx, it.msg, it.a.ID, fmt.Sprintf("gave up after %d attempts: %s", attempts, err))
		default:
			delay := s.backoff.Delay(int(attempts))
			if hasAfter && after > delay {
				delay = after
			}
			if age+delay > s.maxAge {
				s.settle.deadLetter(ctx, it.msg, it.a.ID, fmt.Sprintf("older than max_age %s after %d attempts: %s", s.maxAge, attempts, err))
				continue
			}
			s.settle.nak(it.msg, delay)
		}
	}
	return err
}
