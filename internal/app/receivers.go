package app

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/notify/alertmanager"
	"github.com/vigil-k8s/vigil/notify/pagerduty"
	"github.com/vigil-k8s/vigil/notify/slack"
	"github.com/vigil-k8s/vigil/notify/stdout"
	"github.com/vigil-k8s/vigil/notify/webhook"
)

// This file is the receiver factory: it maps the destinations and routes
// of the configuration onto notify's types, building each receiver once.

// implicitStdout is the destination alerts go to when the configuration
// names none, as `vigil run` does out of the box.
const implicitStdout = "stdout"

// receivers builds what the factory needs besides the configuration: where
// stdout destinations write, what counts cut Slack texts, and where an
// Alertmanager that failed beside one that accepted is reported (nil
// discards).
type receivers struct {
	stdout  io.Writer
	metrics *metrics.Metrics
	logger  *slog.Logger
}

// destinations builds the receiver of every destination in cfg, reading
// its secrets from the environment or the files the destination names, and
// applies the defaults of its type. With no destination configured, alerts
// are printed to stdout.
func (r receivers) destinations(cfg *config.Config) ([]notify.Destination, error) {
	dcs := cfg.Destinations
	if len(dcs) == 0 {
		dcs = []config.Destination{{Name: implicitStdout, Type: config.DestinationStdout}}
	}
	out := make([]notify.Destination, 0, len(dcs))
	for _, dc := range dcs {
		d, err := r.destination(dc)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (r receivers) destination(dc config.Destination) (notify.Destination, error) {
	d := notify.Destination{Name: dc.Name, RateLimit: dc.RateLimit, MaxAttempts: dc.MaxAttempts, Timeout: dc.Timeout}
	if d.Timeout <= 0 {
		// One timeout bounds both the request and the dispatcher's wait.
		d.Timeout = notify.DefaultTimeout
	}
	where := fmt.Sprintf("destination %q", dc.Name)
	var err error
	switch dc.Type {
	case config.DestinationStdout:
		d.Batch = true
		d.Notifier, err = stdout.New(r.stdout, stdout.WithFormat(dc.Format))
	case config.DestinationSlack:
		if d.RateLimit == 0 {
			d.RateLimit = slack.DefaultRate
		}
		d.Notifier, err = r.slack(dc, d.Timeout)
	case config.DestinationWebhook:
		d.Batch = true
		if d.RateLimit == 0 {
			d.RateLimit = webhook.DefaultRate
		}
		d.Notifier, err = newWebhook(dc, d.Timeout)
	case config.DestinationAlertmanager:
		d.Batch = true
		if d.RateLimit == 0 {
			d.RateLimit = alertmanager.DefaultRate
		}
		d.Notifier, err = r.alertmanager(dc, d.Timeout)
	case config.DestinationPagerDuty:
		if d.RateLimit == 0 {
			d.RateLimit = pagerduty.DefaultRate
		}
		d.Notifier, err = newPagerDuty(dc, d.Timeout)
	default:
		return d, fmt.Errorf("%s: unknown type %q (want %s)", where, dc.Type, strings.Join(config.DestinationTypes, ", "))
	}
	if err != nil {
		return d, fmt.Errorf("%s: %w", where, err)
	}
	return d, nil
}

// slack builds a Slack receiver. Its errors say which secret is wrong;
// the caller says which destination.
func (r receivers) slack(dc config.Destination, timeout time.Duration) (*slack.Notifier, error) {
	c := slack.Config{
		Channel: dc.Channel, APIURL: dc.APIURL, Timeout: timeout, MaxTextChars: dc.MaxTextChars,
		Truncated: r.metrics.NotifyTruncated.WithLabelValues(dc.Name),
	}
	var err error
	if dc.TokenEnv != "" || dc.TokenFile != "" {
		c.Token, err = config.Secret("token", dc.TokenEnv, dc.TokenFile)
	} else {
		c.WebhookURL, err = config.Secret("webhook_url", dc.WebhookURLEnv, dc.WebhookURLFile)
	}
	if err != nil {
		return nil, err
	}
	return slack.New(c)
}

// newWebhook builds a webhook receiver, reading the URL (when it is a
// secret) and the signing key.
func newWebhook(dc config.Destination, timeout time.Duration) (*webhook.Notifier, error) {
	c := webhook.Config{
		URL: dc.URL, Headers: dc.Headers, Timeout: timeout,
		CAFile: dc.TLS.CA, CertFile: dc.TLS.Cert, KeyFile: dc.TLS.Key,
	}
	var err error
	if c.URL == "" {
		if c.URL, err = config.Secret("url", dc.URLEnv, dc.URLFile); err != nil {
			return nil, err
		}
	}
	if dc.HMACSecretEnv != "" || dc.HMACSecretFile != "" {
		if c.Secret, err = config.Secret("hmac_secret", dc.HMACSecretEnv, dc.HMACSecretFile); err != nil {
			return nil, err
		}
	}
	return webhook.New(c)
}

// alertmanager builds an Alertmanager receiver, reading the password or
// bearer token.
func (r receivers) alertmanager(dc config.Destination, timeout time.Duration) (*alertmanager.Notifier, error) {
	c := alertmanager.Config{
		URLs: dc.URLs, Username: dc.Username, GeneratorURL: dc.GeneratorURL, ResolveAfter: dc.ResolveAfter, Timeout: timeout,
		CAFile: dc.TLS.CA, CertFile: dc.TLS.Cert, KeyFile: dc.TLS.Key,
	}
	if dc.URL != "" {
		c.URLs = []string{dc.URL}
	}
	if r.logger != nil {
		c.Logger = r.logger.With("destination", dc.Name)
	}
	var err error
	if dc.Username != "" {
		if c.Password, err = config.Secret("password", dc.PasswordEnv, dc.PasswordFile); err != nil {
			return nil, err
		}
	}
	if dc.BearerTokenEnv != "" || dc.BearerTokenFile != "" {
		if c.BearerToken, err = config.Secret("bearer_token", dc.BearerTokenEnv, dc.BearerTokenFile); err != nil {
			return nil, err
		}
	}
	return alertmanager.New(c)
}

// newPagerDuty builds a PagerDuty receiver, reading the routing key.
func newPagerDuty(dc config.Destination, timeout time.Duration) (*pagerduty.Notifier, error) {
	key, err := config.Secret("routing_key", dc.RoutingKeyEnv, dc.RoutingKeyFile)
	if err != nil {
		return nil, err
	}
	return pagerduty.New(pagerduty.Config{RoutingKey: key, URL: dc.URL, Client: dc.Client, ClientURL: dc.ClientURL, Timeout: timeout})
}

// notifyOptions are the dispatcher's settings from the notify section.
func notifyOptions(n config.Notify, m *metrics.Metrics) notify.Options {
	return notify.Options{AckWait: n.AckWait, MaxAttempts: n.MaxDeliver, MaxAge: n.MaxAge, Metrics: m}
}
