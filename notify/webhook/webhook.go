// Package webhook delivers alerts as signed JSON POSTs to any HTTP receiver.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/httpclient"
	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

// DefaultRate is a webhook destination's rate limit, in requests per
// second, when none is configured.
const DefaultRate = 50

// Config is one webhook destination.
type Config struct {
	// URL is the receiver; it may carry a token and is never logged.
	URL string
	// Headers are added to every request (e.g. an Authorization header).
	Headers map[string]string
	// Secret, when set, signs every body (see Sign).
	Secret string
	// CAFile verifies the receiver's certificate; CertFile/KeyFile are the
	// client certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
	// Timeout bounds one request, connection included.
	Timeout time.Duration
	// Now is the clock used for signatures; nil means time.Now.
	Now func() time.Time
}

// Notifier posts alerts to one receiver with one http.Client, built once.
type Notifier struct {
	cfg    Config
	client *http.Client
	now    func() time.Time
}

// New builds a Notifier, loading TLS material now so that a bad file is a
// startup error rather than a failure on the first alert.
func New(cfg Config) (*Notifier, error) {
	if cfg.URL == "" {
		return nil, errors.New("webhook: url is empty")
	}
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, errors.New("webhook: url must start with http:// or https://")
	}
	client, err := httpclient.New(httpclient.Options{
		Name: "webhook", CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, Timeout: cfg.Timeout,
	})
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

// Notify posts all alerts in one request.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	body, err := Body(alerts)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhook: build request: %w", retry.RedactURL(err))
	}
	for k, v := range n.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	if n.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(n.cfg.Secret, n.now(), body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("webhook: %w", retry.RedactURL(err))
	}
	defer resp.Body.Close()
	// A short excerpt of the reply helps whoever reads the dead letter; the
	// rest is drained so the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("webhook: receiver answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	if !retry.Status(resp.StatusCode) {
		return false, err
	}
	if wait, ok := retry.ParseAfter(resp.Header.Get("Retry-After"), n.now()); ok {
		return true, &retry.After{Wait: wait, Err: err}
	}
	return true, err
}
