package notify

import (
	"errors"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Defaults of Options and Destination.
const (
	// DefaultAckWait is how long a destination may hold an alert before
	// JetStream delivers it again.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAttempts bounds the delivery attempts of one alert to a
	// destination before it is dead-lettered.
	DefaultMaxAttempts = 20
	// DefaultMaxAge is how long after it was raised an undelivered alert
	// is still retried.
	DefaultMaxAge = 24 * time.Hour
	// DefaultTimeout bounds one delivery request, connection included.
	DefaultTimeout = 10 * time.Second
	// DefaultFetchBatch is how many alerts one pull fetches at most.
	DefaultFetchBatch = 100
	// DefaultFetchWait is how long a pull waits for the first alert.
	DefaultFetchWait = time.Second
	// DefaultMaxAckPending bounds how many alerts one destination holds
	// unacknowledged, grouped ones included: the memory bound of a
	// notifier.
	DefaultMaxAckPending = 10_000
)

// defaultBackoff spaces the attempts of one alert: 1s doubling to 5m,
// jittered so that replicas do not retry in lockstep.
var defaultBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Jitter: true}

// Options are a Dispatcher's settings, shared by every destination. Zero
// fields take the defaults.
type Options struct {
	// AckWait is how long a fetched alert may stay unacknowledged before
	// JetStream delivers it again (DefaultAckWait). Alerts held for
	// grouping are kept alive well within it.
	AckWait time.Duration
	// MaxAttempts bounds the delivery attempts of an alert to a
	// destination that sets none itself (DefaultMaxAttempts).
	MaxAttempts int
	// MaxAge dead-letters an alert still undelivered this long after it
	// was stored (DefaultMaxAge).
	MaxAge time.Duration
	// Backoff spaces the attempts of one alert; the n-th retry waits
	// Backoff.Delay(n). The zero Policy is 1s doubling to 5m, jittered.
	Backoff backoff.Policy
	// FetchBatch is how many alerts one pull fetches at most
	// (DefaultFetchBatch); a rate-limited destination fetches fewer.
	FetchBatch int
	// FetchWait is how long a pull waits for the first alert
	// (DefaultFetchWait). Shorter waits make shutdown quicker.
	FetchWait time.Duration
	// Metrics count deliveries, failures, dead letters and duplicates, by
	// destination. Nil: metrics of its own, registered nowhere.
	Metrics *metrics.Metrics
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Backoff.Initial == 0 && o.Backoff.Max == 0 {
		o.Backoff = defaultBackoff
	}
	if !o.Backoff.Valid() {
		return o, fmt.Errorf("notify: backoff must satisfy 0 < initial <= max, got %s and %s", o.Backoff.Initial, o.Backoff.Max)
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = DefaultFetchBatch
	}
	if o.FetchWait <= 0 {
		o.FetchWait = DefaultFetchWait
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Destination is one place alerts are delivered to, with its receiver
// already built. Zero fields take the defaults.
type Destination struct {
	// Name identifies the destination in routes, metrics, logs and its
	// consumer's name.
	Name string
	// Notifier delivers. If it has a Close() method, the dispatcher calls
	// it when Run returns.
	Notifier Notifier
	// Batch says the receiver takes many alerts in one request (a webhook,
	// stdout); without it each alert that is not grouped is notified on
	// its own (Slack: one message per alert).
	Batch bool
	// RateLimit is notifications per second; 0 (or less) means unlimited. Each
	// receiver package says what suits its kind of destination (e.g.
	// slack.DefaultRate).
	RateLimit float64
	// MaxAttempts bounds the attempts of one alert (Options.MaxAttempts).
	MaxAttempts int
	// Timeout bounds one notification (DefaultTimeout).
	Timeout time.Duration
}

func (d Destination) withDefaults(o Options) (Destination, error) {
	switch {
	case d.Name == "":
		return d, errors.New("notify: a destination has no name")
	case d.Notifier == nil:
		return d, fmt.Errorf("notify: destination %q has no notifier", d.Name)
	}
	if d.MaxAttempts <= 0 {
		d.MaxAttempts = o.MaxAttempts
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	return d, nil
}
