package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/notify/alertmanager"
	"github.com/vigil-k8s/vigil/notify/pagerduty"
	"github.com/vigil-k8s/vigil/notify/slack"
	"github.com/vigil-k8s/vigil/notify/webhook"
)

// sampleAlerts are n alerts of one rule, each from a different request.
func sampleAlerts(n int) []*alert.Alert {
	out := make([]*alert.Alert, n)
	for i := range out {
		auditID := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		out[i] = &alert.Alert{
			ID: alert.ID("secret-read-by-non-node", auditID), Rule: "secret-read-by-non-node",
			Title: "Secret read by a non-node identity", Severity: alert.SeverityHigh,
			Output:  fmt.Sprintf("system:serviceaccount:default:app get secrets default/db-%d", i),
			Cluster: "prod-eu-1", AuditID: auditID, Stage: "ResponseComplete",
			Time: time.Date(2024, 2, 19, 1, 13, 32, 0, time.UTC), User: "system:serviceaccount:default:app",
			Verb: "get", Resource: "secrets", Namespace: "default", Name: "db", Count: 1,
		}
	}
	return out
}

func TestReceiverFactory(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	if err := os.WriteFile(urlFile, []byte("https://hooks.example/T/B/X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_TOKEN", "xoxb-1")
	var out bytes.Buffer
	r := receivers{stdout: &out, metrics: metrics.New(nil)}
	for _, tc := range []struct {
		name    string
		d       config.Destination
		wantErr string
	}{
		{"slack webhook from file", config.Destination{Name: "s", Type: "slack", WebhookURLFile: urlFile}, ""},
		{"slack token", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_TOKEN", Channel: "#a"}, ""},
		{"slack token unset", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_UNSET_TOKEN", Channel: "#a"}, `destination "s": token: environment variable TEST_UNSET_TOKEN is not set`},
		{"slack token without channel", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_TOKEN"}, `destination "s": slack: a bot token needs a channel`},
		{"webhook url", config.Destination{Name: "w", Type: "webhook", URL: "https://siem.example"}, ""},
		{"webhook url file", config.Destination{Name: "w", Type: "webhook", URLFile: urlFile}, ""},
		{"webhook missing ca", config.Destination{Name: "w", Type: "webhook", URL: "https://x", TLS: config.TLS{CA: filepath.Join(dir, "nope")}}, `destination "w": webhook: tls.ca`},
		{"stdout json", config.Destination{Name: "o", Type: "stdout", Format: "json"}, ""},
		{"stdout bad format", config.Destination{Name: "o", Type: "stdout", Format: "xml"}, `destination "o": stdout: unknown format "xml"`},
		{"unknown type", config.Destination{Name: "x", Type: "opsgenie"}, `destination "x": unknown type "opsgenie"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := r.destination(tc.d)
			if tc.wantErr == "" {
				if err != nil || d.Notifier == nil {
					t.Fatalf("destination: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
	d, err := r.destination(config.Destination{Name: "o", Type: "stdout"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Notifier.Notify(context.Background(), sampleAlerts(1)...); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "secret-read-by-non-node: ") {
		t.Errorf("stdout notifier wrote %q", out.String())
	}
}

// Each type's defaults are the receiver package's, applied once here.
func TestReceiverDefaults(t *testing.T) {
	t.Setenv("TEST_SLACK_URL", "https://hooks.example/T/B/X")
	t.Setenv("TEST_PD_KEY", "R0123456789abcdef0123456789ABCDE")
	r := receivers{stdout: io.Discard, metrics: metrics.New(nil)}
	for _, tc := range []struct {
		d     config.Destination
		rate  float64
		batch bool
	}{
		{config.Destination{Name: "s", Type: "slack", WebhookURLEnv: "TEST_SLACK_URL"}, slack.DefaultRate, false},
		{config.Destination{Name: "w", Type: "webhook", URL: "https://siem.example"}, webhook.DefaultRate, true},
		{config.Destination{Name: "o", Type: "stdout"}, 0, true},
		{config.Destination{Name: "am", Type: "alertmanager", URL: "http://am:9093"}, alertmanager.DefaultRate, true},
		{config.Destination{Name: "pd", Type: "pagerduty", RoutingKeyEnv: "TEST_PD_KEY"}, pagerduty.DefaultRate, false},
		{config.Destination{Name: "w", Type: "webhook", URL: "https://siem.example", RateLimit: 7, MaxAttempts: 3, Timeout: time.Second}, 7, true},
	} {
		d, err := r.destination(tc.d)
		if err != nil {
			t.Fatal(err)
		}
		wantTimeout := tc.d.Timeout
		if wantTimeout == 0 {
			wantTimeout = notify.DefaultTimeout
		}
		if d.Name != tc.d.Name || d.RateLimit != tc.rate || d.Batch != tc.batch || d.Timeout != wantTimeout || d.MaxAttempts != tc.d.MaxAttempts {
			t.Errorf("%s %s: got %+v, want rate %v, batch %v, timeout %s, max attempts %d",
				tc.d.Type, tc.d.Name, d, tc.rate, tc.batch, wantTimeout, tc.d.MaxAttempts)
		}
	}
}

// A Slack destination counts its cut messages under its own name.
func TestReceiverCountsTruncatedSlackTexts(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(hook.Close)
	t.Setenv("TEST_SLACK_URL", hook.URL+"/services/T0/B0/secret")
	m := metrics.New(prometheus.NewRegistry())
	d, err := receivers{metrics: m}.destination(config.Destination{Name: "secops", Type: "slack", WebhookURLEnv: "TEST_SLACK_URL", MaxTextChars: 300})
	if err != nil {
		t.Fatal(err)
	}
	long := sampleAlerts(1)[0]
	long.Output = strings.Repeat("y", 1000)
	if _, err := d.Notifier.Notify(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m.NotifyTruncated.WithLabelValues("secops")); n != 1 {
		t.Errorf("vigil_notify_truncated_texts_total{destination=\"secops\"} = %v, want 1", n)
	}
}

func TestRoutesMapEveryField(t *testing.T) {
	got := routes([]config.Route{{
		Match: config.Match{Severity: []string{"high"}, Rules: []string{"r"}, Tags: []string{"t"}, Cluster: []string{"c"},
			Namespace: []string{"n"}, User: []string{"u"}, Resource: []string{"secrets"}, When: `alert.name != ""`},
		To: []string{"a", "b"}, GroupBy: []string{"rule"}, GroupWait: time.Second, GroupInterval: time.Minute,
		RepeatInterval: time.Hour, Continue: true,
	}})
	want := []notify.Route{{
		Match: notify.Match{Severity: []string{"high"}, Rules: []string{"r"}, Tags: []string{"t"}, Cluster: []string{"c"},
			Namespace: []string{"n"}, User: []string{"u"}, Resource: []string{"secrets"}, When: `alert.name != ""`},
		To: []string{"a", "b"}, GroupBy: []string{"rule"}, GroupWait: time.Second, GroupInterval: time.Minute,
		RepeatInterval: time.Hour, Continue: true,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %+v, want %+v", got, want)
	}
}

func TestDispatcherOptionsFollowTheConfigThenTheHook(t *testing.T) {
	cfg := &config.Config{Notify: config.Notify{AckWait: 10 * time.Second, MaxDeliver: 7, MaxAge: time.Hour}}
	m := metrics.New(nil)
	a := &App{cfg: cfg, metrics: m}
	quick := backoff.Policy{Initial: time.Millisecond, Max: 10 * time.Millisecond}
	WithNotifyOptions(func(o *notify.Options) { o.Backoff, o.MaxAge = quick, time.Minute })(a)
	want := notify.Options{AckWait: 10 * time.Second, MaxAttempts: 7, MaxAge: time.Minute, Backoff: quick, Metrics: m}
	if got := a.dispatcherOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("dispatcher options = %+v, want %+v", got, want)
	}
}

func TestNewRejectsMissingSecret(t *testing.T) {
	cfg := &config.Config{
		NATS: config.NATS{URL: "nats://127.0.0.1:1"}, // never dialled: New fails first
		Destinations: []config.Destination{{
			Name: "siem", Type: config.DestinationWebhook, URL: "https://siem.example",
			HMACSecretEnv: "VIGIL_TEST_UNSET_SECRET",
		}},
	}
	_, err := New(cfg, RoleNotify, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `destination "siem"`) || !strings.Contains(err.Error(), "VIGIL_TEST_UNSET_SECRET") {
		t.Errorf("got %v, want an error naming the destination and the variable", err)
	}
}

func TestNoDestinationsPrintsToStdout(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	var out logtest.Buffer
	dests, err := receivers{stdout: &out, metrics: metrics.New(nil)}.destinations(&config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := notify.NewDispatcher(js, dests, nil, notify.Options{FetchWait: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	alerts := sampleAlerts(3)
	if err := engine.PublishAlerts(ctx, js, alerts); err != nil {
		t.Fatal(err)
	}
	// Each alert is a line of its own, its context indented below it.
	waittest.Until(t, 20*time.Second, "three alert lines", func() bool {
		return strings.Count(out.String(), "\n")-strings.Count(out.String(), "\n    ") == 3
	})
	for _, a := range alerts {
		if !strings.Contains(out.String(), a.Output) {
			t.Errorf("stdout lacks %q:\n%s", a.Output, out.String())
		}
	}
}

// The Alertmanager and PagerDuty receivers read their secrets from the
// environment or a file, and use them.
func TestReceiverSecretsOfAlertmanagerAndPagerDuty(t *testing.T) {
	var mu sync.Mutex
	var auth, body []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		auth, body = append(auth, r.Header.Get("Authorization")), append(body, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	key := filepath.Join(t.TempDir(), "pd-key")
	if err := os.WriteFile(key, []byte("R0123456789abcdef0123456789ABCDE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_AM_PASSWORD", "am-s3cret")
	r := receivers{metrics: metrics.New(nil)}
	for _, dc := range []config.Destination{
		{Name: "am", Type: "alertmanager", URL: srv.URL, Username: "vigil", PasswordEnv: "TEST_AM_PASSWORD"},
		{Name: "pd", Type: "pagerduty", URL: srv.URL + "/v2/enqueue", RoutingKeyFile: key},
	} {
		d, err := r.destination(dc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Notifier.Notify(context.Background(), &alert.Alert{ID: "r/1", Rule: "r", Severity: "high", Time: time.Now()}); err != nil {
			t.Fatalf("%s: %v", dc.Name, err)
		}
		d.Notifier.(interface{ Close() }).Close()
	}
	if auth[0] != "Basic dmlnaWw6YW0tczNjcmV0" { // vigil:am-s3cret
		t.Errorf("Alertmanager Authorization = %q", auth[0])
	}
	if !strings.Contains(body[1], `"routing_key":"R0123456789abcdef0123456789ABCDE"`) {
		t.Errorf("PagerDuty body %s has not the key of the file", body[1])
	}

	_, err := r.destination(config.Destination{Name: "pd", Type: "pagerduty", RoutingKeyEnv: "TEST_PD_UNSET"})
	if err == nil || !strings.Contains(err.Error(), `destination "pd": routing_key: environment variable TEST_PD_UNSET is not set`) {
		t.Errorf("missing routing key: %v", err)
	}
}
