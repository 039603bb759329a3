package notify

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-k8s/vigil/internal/backoff"
)

// rateLimit spaces a destination's notifications: a token bucket at the
// destination's rate, and a pause until the time a receiver asked for in
// a Retry-After, during which the destination sends nothing at all.
type rateLimit struct {
	tokens *rate.Limiter
	now    func() time.Time
	until  time.Time
}

// newRateLimit allows perSecond notifications a second, one at a time;
// 0 or less is no limit.
func newRateLimit(perSecond float64, now func() time.Time) *rateLimit {
	l := &rateLimit{tokens: rate.NewLimiter(rate.Inf, 1), now: now}
	if perSecond > 0 {
		l.tokens = rate.NewLimiter(rate.Limit(perSecond), 1)
	}
	return l
}

// wait blocks until the next notification may be sent, or ctx is done.
func (l *rateLimit) wait(ctx context.Context) error {
	if d := l.paused(); d > 0 {
		if err := backoff.Wait(ctx, d); err != nil {
			return err
		}
	}
	return l.tokens.Wait(ctx)
}

// honour pauses the destination for as long as the error of a failed
// notification says the receiver asked.
func (l *rateLimit) honour(err error) {
	if after, ok := RetryAfter(err); ok {
		l.until = l.now().Add(after)
	}
}

// paused is what remains of a receiver's pause; 0 or less when none.
func (l *rateLimit) paused() time.Duration {
	if l.until.IsZero() {
		return 0
	}
	return l.until.Sub(l.now())
}

// fetchBatch bounds a destination's fetch to what it can send well within
// the ack wait, so that alerts queued behind its rate limit are not
// redelivered while they wait.
func fetchBatch(batch int, perSecond float64, ackWait time.Duration) int {
	if perSecond <= 0 {
		return batch
	}
	if perWait := int(perSecond * ackWait.Seconds() / 2); perWait < batch {
		return max(perWait, 1)
	}
	return batch
}
