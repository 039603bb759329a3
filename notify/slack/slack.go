// Package slack delivers alerts to Slack as Block Kit messages, through an
// incoming webhook or a bot token and chat.postMessage.
package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

// DefaultRate is a Slack destination's rate limit, in messages per second,
// when none is configured: Slack allows about one message per second per
// channel and answers a faster sender with 429s.
const DefaultRate = 1

// Bounds of Config.MaxTextChars that make sense to configure: shorter
// would not say what happened, longer Slack refuses (a section's text is
// at most MaxSectionText characters).
const (
	MinTextChars = 200
	MaxTextChars = MaxSectionText
)

// Config is one Slack destination: WebhookURL, or Token and Channel.
type Config struct {
	WebhookURL string
	Token      string
	Channel    string
	// APIURL overrides https://slack.com/api/ for the bot token (proxies,
	// tests).
	APIURL  string
	Timeout time.Duration
	// MaxTextChars, when positive, cuts the section, context and fallback
	// texts of each message to that many characters if Slack's own limits
	// are higher; 0 keeps Slack's limits.
	MaxTextChars int
	// Truncated counts the messages posted with a text cut to fit (by
	// MaxTextChars or by Slack's limits). Nil: a counter registered
	// nowhere.
	Truncated prometheus.Counter
}

// Notifier posts one Slack message per call to Notify.
type Notifier struct {
	webhookURL string
	channel    string
	api        *slack.Client
	http       *http.Client
	maxText    int
	truncated  prometheus.Counter
}

// New builds a Notifier; its http.Client is built once and reused.
func New(cfg Config) (*Notifier, error) {
	hasURL, hasToken := cfg.WebhookURL != "", cfg.Token != ""
	if hasURL == hasToken {
		return nil, errors.New("slack: set either a webhook URL or a bot token")
	}
	if hasToken && cfg.Channel == "" {
		return nil, errors.New("slack: a bot token needs a channel")
	}
	if cfg.MaxTextChars < 0 {
		return nil, fmt.Errorf("slack: max text characters must not be negative, got %d", cfg.MaxTextChars)
	}
	n := &Notifier{
		webhookURL: cfg.WebhookURL,
		channel:    cfg.Channel,
		http:       &http.Client{Timeout: cfg.Timeout},
		maxText:    cfg.MaxTextChars,
		truncated:  cfg.Truncated,
	}
	if n.truncated == nil {
		n.truncated = prometheus.NewCounter(prometheus.CounterOpts{Name: "truncated_texts_total"})
	}
	if hasToken {
		opts := []slack.Option{slack.OptionHTTPClient(n.http)}
		if cfg.APIURL != "" {
			// slack-go appends method names directly to the base URL.
			opts = append(opts, slack.OptionAPIURL(strings.TrimSuffix(cfg.APIURL, "/")+"/"))
		}
		n.api = slack.New(cfg.Token, opts...)
	}
	return n, nil
}

// Close releases idle connections.
func (n *Notifier) Close() { n.http.CloseIdleConnections() }

// Notify posts alerts as one message; several alerts make a grouped one.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	if len(alerts) == 0 {
		return false, nil
	}
	msg, truncated := Message(alerts, n.maxText)
	var err error
	if n.api != nil {
		_, _, err = n.api.PostMessageContext(ctx, n.channel,
			slack.MsgOptionText(msg.Text, false),
			slack.MsgOptionAttachments(msg.Attachments...))
	} else {
		err = slack.PostWebhookCustomHTTPContext(ctx, n.webhookURL, n.http, msg)
	}
	if err == nil {
		if truncated {
			n.truncated.Inc()
		}
		return false, nil
	}
	return classify(err)
}

// Slack API errors (ok:false) that are the service's fault, not ours.
var retryableAPIErrors = map[string]bool{
	"ratelimited":         true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
}

func classify(err error) (bool, error) {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return true, &retry.After{Wait: rl.RetryAfter, Err: fmt.Errorf("slack: %w", rl)}
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return retry.Status(sc.Code), fmt.Errorf("slack: HTTP %d: %w", sc.Code, sc)
	}
	var api slack.SlackErrorResponse
	if errors.As(err, &api) {
		return retryableAPIErrors[api.Err], fmt.Errorf("slack: %w", api)
	}
	// Transport failures: the URL of an incoming webhook is its credential.
	return true, fmt.Errorf("slack: %w", retry.RedactURL(err))
}
