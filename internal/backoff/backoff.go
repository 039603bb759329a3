// Package backoff is vigil's one way of waiting between attempts: a wait
// that doubles with each failure up to a cap, optionally jittered, used to
// retry an operation, to pace a loop that keeps failing, or to compute the
// redelivery delay of a message from its delivery count.
//
// Every retry in vigil goes through it, so that bounds, jitter and the
// reaction to a cancelled context are the same everywhere.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: the wait after the first failure is
// Initial, and it doubles with every further failure up to Max.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
	// Jitter draws each wait from the upper half of its range, [d/2, d],
	// so that replicas failing together do not retry in lockstep.
	Jitter bool
}

// Valid reports whether the policy can be used: 0 < Initial <= Max.
func (p Policy) Valid() bool { return p.Initial > 0 && p.Max >= p.Initial }

// Delay is the wait after the n-th consecutive failure (n >= 1):
// Initial·2^(n-1), at most Max, jittered when the policy says so.
func (p Policy) Delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if p.Jitter && d > 1 {
		half := d / 2
		d = half + rand.N(d-half+1)
	}
	return d
}

// Sequence paces a loop that fails repeatedly: each Next is the wait after
// one more consecutive failure, and Reset starts over after a success. It
// is not safe for concurrent use.
type Sequence struct {
	p        Policy
	failures int
}

// Sequence starts a sequence of waits under p.
func (p Policy) Sequence() *Sequence { return &Sequence{p: p} }

// Next counts one more failure and returns the wait before trying again.
func (s *Sequence) Next() time.Duration {
	s.failures++
	return s.p.Delay(s.failures)
}

// Failures is the number of consecutive failures counted since the last
// Reset.
func (s *Sequence) Failures() int { return s.failures }

// Reset forgets the failures: the next wait is Initial again.
func (s *Sequence) Reset() { s.failures = 0 }

// Wait sleeps for d or until ctx is done, whichever comes first, and
// returns ctx.Err() in the latter case.
func Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Option changes how Retry retries.
type Option func(*retryOptions)

type retryOptions struct {
	attempts int
	onRetry  func(err error, attempt int, wait time.Duration)
}

// Attempts bounds the calls Retry makes; 0, the default, retries until
// the operation succeeds or the context is done.
func Attempts(n int) Option { return func(o *retryOptions) { o.attempts = n } }

// OnRetry is told of every failed attempt that will be retried: its
// error, its number (from 1) and the wait before the next one.
func OnRetry(f func(err error, attempt int, wait time.Duration)) Option {
	return func(o *retryOptions) { o.onRetry = f }
}

// Retry calls op until it returns nil, waiting under p between attempts.
// It stops early when ctx is done — the error then matches both ctx.Err()
// and op's last error with errors.Is — and after the last of a bounded
// number of Attempts, returning op's last error.
func Retry(ctx context.Context, p Policy, op func(context.Context) error, opts ...Option) error {
	var o retryOptions
	for _, opt := range opts {
		opt(&o)
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return joinCtx(err, ctx.Err())
		}
		if o.attempts > 0 && attempt >= o.attempts {
			return err
		}
		wait := p.Delay(attempt)
		if o.onRetry != nil {
			o.onRetry(err, attempt, wait)
		}
		if werr := Wait(ctx, wait); werr != nil {
			return joinCtx(err, werr)
		}
	}
}

// joinCtx joins the last error with the context's, once.
func joinCtx(err, ctxErr error) error {
	if errors.Is(err, ctxErr) {
		return err
	}
	return errors.Join(err, ctxErr)
}
