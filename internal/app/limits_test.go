package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/logtest"
)

// TestConfiguredLimitsAndListenAuth runs `vigil run` with the hardening
// keys set: alerts are cut to engine.max_alert_field_bytes and
// engine.max_alert_source_ips (larger than the defaults for fields, smaller
// for source IPs) with the cuts counted, the threshold bucket is bounded to
// engine.max_threshold_groups, and nats.listen requires nats.user's
// password while vigil's own in-process connections keep working.
func TestConfiguredLimitsAndListenAuth(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	pwFile := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(pwFile, []byte("n4ts-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := freeAddr(t)
	sink := newRawSink(t)
	cfg := advConfig(t, dir, fmt.Sprintf(`
engine: {max_alert_field_bytes: 16384, max_alert_source_ips: 2, max_threshold_groups: 1000}
nats: {listen: %q, user: vigil, password_file: %s}
ingest:
  files: [{path: %s, poll_interval: 20ms}]
destinations:
  - {name: sink, type: webhook, url: %q}
`, natsAddr, pwFile, logPath, sink.srv.URL))
	logs := &logtest.Buffer{}
	r := startOpts(t, cfg, logs)
	defer r.stop(t)

	// 12 KiB user agent: more than the default 8 KiB, within the 16 KiB
	// configured; 20 KiB name: cut; 5 source IPs: cut to 2.
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": "limits-1", "stage": "ResponseComplete", "verb": "get",
		"user":                     map[string]any{"username": "system:serviceaccount:ns:app"},
		"userAgent":                strings.Repeat("a", 12<<10),
		"sourceIPs":                []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"},
		"objectRef":                map[string]any{"resource": "secrets", "namespace": "ns", "name": strings.Repeat("n", 20<<10)},
		"responseStatus":           map[string]any{"code": 200},
		"requestReceivedTimestamp": "2026-03-04T10:00:00.000000Z",
	}
	line, _ := json.Marshal(ev)
	appendLines(t, logPath, string(line))
	id := alert.ID("adv-secret-read", "limits-1")
	sink.waitFor(t, 30*time.Second, id)
	sink.mu.Lock()
	a := sink.alerts[id]
	sink.mu.Unlock()
	if len(a.UserAgent) != 12<<10 {
		t.Errorf("user agent of 12 KiB delivered as %d bytes, want intact under max_alert_field_bytes 16384", len(a.UserAgent))
	}
	if len(a.Name) > 16384 || !strings.HasSuffix(a.Name, "…") {
		t.Errorf("name of 20 KiB delivered as %d bytes (marked %v), want cut to 16384", len(a.Name), strings.HasSuffix(a.Name, "…"))
	}
	if len(a.SourceIPs) != 2 {
		t.Errorf("sourceIPs = %v, want the first 2", a.SourceIPs)
	}
	body := scrape(t, "http://"+r.app.MetricsAddr().String())
	for _, limit := range []string{"alert_field_bytes", "alert_source_ips"} {
		if got := metricNumber(t, body, fmt.Sprintf(`vigil_limit_exceeded_total{limit=%q}`, limit)); got < 1 {
			t.Errorf("vigil_limit_exceeded_total{limit=%q} = %v, want >= 1", limit, got)
		}
	}
	if metricValue(body, "vigil_threshold_groups") == "" {
		t.Error("vigil_threshold_groups is not exported")
	}

	// Another process on nats.listen: refused without the password, served
	// with it, and it finds the bucket bounded by the server.
	url := "nats://" + natsAddr
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("connected to nats.listen without credentials")
	}
	opts, err := bus.ClientOptions(bus.Credentials{User: "vigil", Password: "n4ts-s3cret"}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := bus.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.KVStream(bus.BucketThresholds))
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.MaxMsgs != 1000 || c.Discard != jetstream.DiscardOld {
		t.Errorf("threshold bucket: max_msgs %d, discard %v; want 1000, old", c.MaxMsgs, c.Discard)
	}
	if strings.Contains(logs.String(), "n4ts-s3cret") {
		t.Error("the NATS password appears in the logs")
	}
}
