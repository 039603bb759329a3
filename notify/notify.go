// Package notify delivers alerts from the ALERTS stream to destinations:
// it routes each alert, groups and throttles, rate limits, retries with
// backoff and dead-letters what cannot be delivered. It knows receivers
// only as Notifiers: they live in notify/slack, notify/webhook and
// notify/stdout, and whoever builds a Dispatcher builds them.
package notify

import (
	"context"
	"errors"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Notifier delivers alerts to one destination. retry reports whether a
// failure may succeed if tried again; an error that also has a
// RetryAfter() time.Duration method says how long the receiver asked to
// wait.
type Notifier interface {
	Notify(ctx context.Context, alerts ...*alert.Alert) (retry bool, err error)
}

// RetryAfter returns the wait a receiver asked for in err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}
