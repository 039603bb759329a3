// Package pagerduty delivers alerts to PagerDuty as trigger events of the
// Events API v2, one event per alert, deduplicated by the alert's id.
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/httpclient"
	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

// DefaultURL is the Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// DefaultRate is a PagerDuty destination's rate limit, in events per
// second, when none is configured: PagerDuty throttles an integration
// sending much more than a hundred events a minute with 429s.
const DefaultRate = 2

// Config is one PagerDuty destination.
type Config struct {
	// RoutingKey is the integration key of an Events API v2 integration.
	// It is a secret, sent in the body, never logged.
	RoutingKey string
	// URL overrides DefaultURL (the EU endpoint, a proxy, tests).
	URL string
	// Client and ClientURL name the sender in PagerDuty's alert view
	// ("View in <client>").
	Client, ClientURL string
	// Timeout bounds one request, connection included.
	Timeout time.Duration
	// Now is the clock of Retry-After; nil means time.Now.
	Now func() time.Time
}

// Notifier sends events with one http.Client, built once.
type Notifier struct {
	cfg    Config
	client *http.Client
	now    func() time.Time
}

// New builds a Notifier.
func New(cfg Config) (*Notifier, error) {
	if cfg.RoutingKey == "" {
		return nil, errors.New("pagerduty: routing key is empty")
	}
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	for _, u := range []struct{ what, url string }{{"url", cfg.URL}, {"client_url", cfg.ClientURL}} {
		if u.url == "" {
			continue
		}
		p, err := url.Parse(u.url)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("pagerduty: %s must be an http:// or https:// URL", u.what)
		}
	}
	client, err := httpclient.New(httpclient.Options{Name: "pagerduty", Timeout: cfg.Timeout})
	if err != nil {
		return nil, err
	}
	n := &Notifier{cfg: cfg, client: client, now: cfg.Now}
	if n.now == nil {
		n.now = time.Now
	}
	return n, nil
}

// Close releases idle connections.
func (n *Notifier) Close() { n.client.CloseIdleConnections() }

// Notify sends one event per alert, in order, and stops at the first
// failure: the notification is then retried whole, and the events already
// accepted are deduplicated by PagerDuty on their dedup_key.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	for _, a := range alerts {
		body, err := Body(Build(a, n.cfg.RoutingKey, n.cfg.Client, n.cfg.ClientURL))
		if err != nil {
			return false, err
		}
		if retry, err := n.send(ctx, body); err != nil {
			return retry, err
		}
	}
	return false, nil
}

// response is the Events API's answer: status and message, and for a 400
// the errors found in the event.
type response struct {
	Status  string   `json:"status"`
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
}

func (n *Notifier) send(ctx context.Context, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("pagerduty: build request: %w", retry.RedactURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("pagerduty: %w", retry.RedactURL(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("pagerduty: answered %s: %s", resp.Status, explain(raw))
	if !retry.Status(resp.StatusCode) {
		return false, err
	}
	if wait, ok := retry.ParseAfter(resp.Header.Get("Retry-After"), n.now()); ok {
		return true, &retry.After{Wait: wait, Err: err}
	}
	return true, err
}

// explain renders PagerDuty's error body for the dead letter: its message
// and what it found wrong, or the start of whatever else it answered.
func explain(raw []byte) string {
	var r response
	if json.Unmarshal(raw, &r) == nil && r.Message != "" {
		if len(r.Errors) > 0 {
			return r.Message + ": " + strings.Join(r.Errors, "; ")
		}
		return r.Message
	}
	return cut(strings.TrimSpace(string(raw)), 512)
}
