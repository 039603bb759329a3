// Package notify delivers alerts from the ALERTS stream to destinations:
// it routes each alert, groups and throttles, rate limits, retries with
// backoff and dead-letters what cannot be delivered. The receivers live in
// notify/slack, notify/webhook and notify/stdout.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/notify/slack"
	"github.com/vigil-k8s/vigil/notify/stdout"
	"github.com/vigil-k8s/vigil/notify/webhook"
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

// ImplicitStdout is the destination used when the configuration names none.
const ImplicitStdout = "stdout"

type options struct {
	stdout     io.Writer
	backoffMin time.Duration
	backoffMax time.Duration
	fetchBatch int
	maxWait    time.Duration
	metrics    *metrics.Metrics
	now        func() time.Time
}

// Option tunes a Dispatcher or NewNotifier.
type Option func(*options)

// WithStdout sends stdout destinations to w instead of os.Stdout.
func WithStdout(w io.Writer) Option { return func(o *options) { o.stdout = w } }

// WithBackoff sets the first and the longest wait between delivery
// attempts; the wait doubles per attempt, with jitter.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = initial, max }
}

// WithFetch sets how many alerts one pull fetches and how long a pull
// waits for the first one. Shorter waits make shutdown quicker.
func WithFetch(batch int, maxWait time.Duration) Option {
	return func(o *options) { o.fetchBatch, o.maxWait = batch, maxWait }
}

// WithMetrics counts deliveries, failures, dead letters, duplicates and
// cut texts into m, by destination; without it they go to metrics
// registered nowhere.
func WithMetrics(m *metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

// DefaultAckWait is how long a destination may hold an alert before
// JetStream delivers it again.
const DefaultAckWait = 30 * time.Second

func defaultOptions() options {
	return options{
		stdout:     os.Stdout,
		backoffMin: time.Second,
		backoffMax: 5 * time.Minute,
		fetchBatch: 100,
		maxWait:    time.Second,
		now:        time.Now,
	}
}

// NewNotifier builds the Notifier for a destination, reading its secrets
// from the environment or files it names.
func NewNotifier(d config.Destination, logger *slog.Logger, opts ...Option) (Notifier, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	_ = logger // receivers log nothing themselves: the dispatcher logs outcomes without secrets
	where := fmt.Sprintf("destination %q", d.Name)
	switch d.Type {
	case config.DestinationStdout:
		n, err := stdout.New(o.stdout, stdout.WithFormat(d.Format))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return n, nil
	case config.DestinationSlack:
		c := slack.Config{Channel: d.Channel, APIURL: d.APIURL, Timeout: d.Timeout, MaxTextChars: d.MaxTextChars}
		if o.metrics != nil {
			c.Truncated = o.metrics.NotifyTruncated.WithLabelValues(d.Name)
		}
		var err error
		if d.TokenEnv != "" || d.TokenFile != "" {
			c.Token, err = config.Secret(where+": token", d.TokenEnv, d.TokenFile)
		} else {
			c.WebhookURL, err = config.Secret(where+": webhook_url", d.WebhookURLEnv, d.WebhookURLFile)
		}
		if err != nil {
			return nil, err
		}
		n, err := slack.New(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return n, nil
	case config.DestinationWebhook:
		c := webhook.Config{
			URL: d.URL, Headers: d.Headers, Timeout: d.Timeout,
			CAFile: d.TLS.CA, CertFile: d.TLS.Cert, KeyFile: d.TLS.Key,
		}
		var err error
		if c.URL == "" {
			if c.URL, err = config.Secret(where+": url", d.URLEnv, d.URLFile); err != nil {
				return nil, err
			}
		}
		if d.HMACSecretEnv != "" || d.HMACSecretFile != "" {
			if c.Secret, err = config.Secret(where+": hmac_secret", d.HMACSecretEnv, d.HMACSecretFile); err != nil {
				return nil, err
			}
		}
		n, err := webhook.New(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return n, nil
	}
	return nil, fmt.Errorf("%s: unknown type %q (want slack, webhook or stdout)", where, d.Type)
}
