// Package alertmanager delivers alerts to Prometheus Alertmanager through
// its API v2, so that a team's own routes, silences and receivers
// (PagerDuty, Opsgenie, email, …) take vigil's alerts like any other.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/httpclient"
	"github.com/vigil-k8s/vigil/notify/internal/retry"
)

// DefaultRate is an Alertmanager destination's rate limit, in requests per
// second, when none is configured. Each request carries many alerts.
const DefaultRate = 20

// DefaultResolveAfter is how long after it was sent an alert stays firing
// in Alertmanager (Config.ResolveAfter).
const DefaultResolveAfter = time.Hour

// MaxAlertsPerRequest bounds the alerts of one POST: a large group is sent
// in several, so that no request grows without bound.
const MaxAlertsPerRequest = 100

// apiPath is appended to each configured URL.
const apiPath = "/api/v2/alerts"

// Config is one Alertmanager destination.
type Config struct {
	// URLs are the Alertmanagers, by the URL their UI is served at
	// (http://alertmanager:9093, or with its --web.route-prefix). Every
	// alert goes to all of them, as Prometheus sends: the instances of an
	// HA cluster deduplicate notifications among themselves, and must not
	// be put behind a load balancer.
	URLs []string
	// Username and Password are HTTP basic auth; BearerToken is sent as
	// "Authorization: Bearer"; at most one of the two.
	Username, Password string
	BearerToken        string
	// CAFile verifies the server's certificate; CertFile/KeyFile are the
	// client certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
	// GeneratorURL, when set, is each alert's generatorURL (Alertmanager's
	// "Source" link); {rule}, {id}, {auditID} and {cluster} in it are
	// replaced by the alert's values, query-escaped.
	GeneratorURL string
	// ResolveAfter is how long after sending an alert ends (endsAt);
	// 0 means DefaultResolveAfter.
	ResolveAfter time.Duration
	// Timeout bounds one request, connection included.
	Timeout time.Duration
	// Now is the clock of endsAt and Retry-After; nil means time.Now.
	Now func() time.Time
	// Logger reports an Alertmanager that failed while another accepted
	// the alerts; nil discards.
	Logger *slog.Logger
}

// Notifier posts alerts to every configured Alertmanager.
type Notifier struct {
	cfg    Config
	urls   []string
	hosts  []string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
}

// New builds a Notifier with one http.Client, built once.
func New(cfg Config) (*Notifier, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("alertmanager: no url")
	}
	n := &Notifier{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	for i, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("alertmanager: url %d: must be an http:// or https:// URL", i+1)
		}
		if u.User != nil {
			return nil, fmt.Errorf("alertmanager: url %d: credentials belong in username and password, not in the URL", i+1)
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + apiPath
		u.RawQuery, u.Fragment = "", ""
		n.urls = append(n.urls, u.String())
		n.hosts = append(n.hosts, u.Host)
	}
	if cfg.BearerToken != "" && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("alertmanager: set either basic auth or a bearer token, not both")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("alertmanager: basic auth needs both a username and a password")
	}
	if cfg.ResolveAfter < 0 {
		return nil, fmt.Errorf("alertmanager: resolve_after must not be negative, got %s", cfg.ResolveAfter)
	}
	if n.cfg.ResolveAfter == 0 {
		n.cfg.ResolveAfter = DefaultResolveAfter
	}
	if cfg.GeneratorURL != "" {
		u, err := url.Parse(generatorURL(cfg.GeneratorURL, &alert.Alert{Rule: "r", ID: "r/i", AuditID: "i", Cluster: "c"}))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("alertmanager: generator_url must be an http:// or https:// URL")
		}
	}
	client, err := httpclient.New(httpclient.Options{
		Name: "alertmanager", CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, Timeout: cfg.Timeout,
	})
	if err != nil {
		return nil, err
	}
	n.client = client
	if n.now == nil {
		n.now = time.Now
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	return n, nil
}

// Close releases idle connections.
func (n *Notifier) Close() { n.client.CloseIdleConnections() }

// Notify posts alerts to every Alertmanager, at most MaxAlertsPerRequest
// in one request. They are delivered once every request was accepted by
// at least one Alertmanager; a part sent again after a failure is
// deduplicated there by its labels.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	for len(alerts) > 0 {
		part := alerts[:min(len(alerts), MaxAlertsPerRequest)]
		alerts = alerts[len(part):]
		body, err := json.Marshal(Convert(part, n.now(), n.cfg.ResolveAfter, n.cfg.GeneratorURL))
		if err != nil {
			return false, fmt.Errorf("alertmanager: encode alerts: %w", err)
		}
		if retry, err := n.postAll(ctx, body); err != nil {
			return retry, err
		}
	}
	return false, nil
}

// postAll posts body to every Alertmanager at once. One acceptance is
// enough; when none accepted, the failure is retried if any of them may
// succeed later, after the longest wait any asked for.
func (n *Notifier) postAll(ctx context.Context, body []byte) (bool, error) {
	type result struct {
		retry bool
		err   error
	}
	res := make([]result, len(n.urls))
	var wg sync.WaitGroup
	for i := range n.urls {
		wg.Go(func() {
			r, err := n.post(ctx, n.urls[i], body)
			res[i] = result{r, err}
		})
	}
	wg.Wait()
	var errs []error
	retryable, accepted := false, false
	var wait time.Duration
	for i, r := range res {
		if r.err == nil {
			accepted = true
			continue
		}
		err := r.err
		if len(n.urls) > 1 {
			err = fmt.Errorf("%s: %w", n.hosts[i], err)
		}
		errs = append(errs, err)
		retryable = retryable || r.retry
		if w, ok := retryAfter(r.err); ok && w > wait {
			wait = w
		}
	}
	if accepted {
		for _, err := range errs {
			n.log.Warn("an Alertmanager did not accept alerts that another did", "err", err)
		}
		return false, nil
	}
	err := errors.Join(errs...)
	if retryable && wait > 0 {
		return true, &retry.After{Wait: wait, Err: err}
	}
	return retryable, err
}

func retryAfter(err error) (time.Duration, bool) {
	var ra *retry.After
	if errors.As(err, &ra) {
		return ra.Wait, true
	}
	return 0, false
}

func (n *Notifier) post(ctx context.Context, u string, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("alertmanager: build request: %w", retry.RedactURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	switch {
	case n.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+n.cfg.BearerToken)
	case n.cfg.Username != "":
		req.SetBasicAuth(n.cfg.Username, n.cfg.Password)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("alertmanager: %w", retry.RedactURL(err))
	}
	defer resp.Body.Close()
	// Alertmanager explains a 400 (a label it refuses) in the body; the
	// rest is drained so the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("alertmanager: answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	if !retry.Status(resp.StatusCode) {
		return false, err
	}
	if wait, ok := retry.ParseAfter(resp.Header.Get("Retry-After"), n.now()); ok {
		return true, &retry.After{Wait: wait, Err: err}
	}
	return true, err
}
