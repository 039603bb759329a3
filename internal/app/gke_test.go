package app_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/pubsubtest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

// gkeConfig is a vigil reading the fake's subscription, delivering to
// sink. The client library connects to PUBSUB_EMULATOR_HOST, as it would
// to an emulator, without credentials.
func gkeConfig(t *testing.T, fake *pubsubtest.Fake, sinkURL string) *config.Config {
	t.Helper()
	t.Setenv("PUBSUB_EMULATOR_HOST", fake.Addr())
	cfg, err := config.Parse("gke.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
reload: {watch: false}
ingest:
  sources:
    - {type: gke, project: %s, subscription: %s}
destinations:
  - {name: sink, type: webhook, url: %q}
`, filepath.Join(t.TempDir(), "data"), pubsubtest.Project, pubsubtest.Subscription, sinkURL))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestGKEEveryEventOnceAcrossARestart runs vigil on a GKE cluster's log
// sink subscription: entries a crashed process held, which Pub/Sub delivers
// again once their ack deadline expires, entries delivered twice, entries
// sent while vigil is stopped, and a message that is no audit entry. Each
// deletion raises its alert once, and every message is acknowledged, the
// bad one too.
func TestGKEEveryEventOnceAcrossARestart(t *testing.T) {
	fake := pubsubtest.New(t, true)
	s := newSink(t)
	cfg := gkeConfig(t, fake, s.srv.URL)
	buf := &logtest.Buffer{}

	publish := func(auditID string) string {
		return "deployment-deleted-in-default/" + auditID
	}
	var want, msgs []string
	for i := range 4 {
		id := fmt.Sprintf("g-%d", i)
		msgs = append(msgs, fake.Publish(pubsubtest.Deletion(id)))
		want = append(want, publish(id))
	}
	// Pub/Sub delivers at least once: the same entries come again.
	msgs = append(msgs, fake.Publish(pubsubtest.Deletion("g-0")), fake.Publish(pubsubtest.Deletion("g-3")))
	bad := fake.Publish([]byte(`{"protoPayload": "not an AuditLog"}`))
	msgs = append(msgs, bad)

	crashed := fake.Crash(t, len(msgs))

	r := start(t, cfg, buf)
	s.waitFor(t, want...)
	waittest.Until(t, 30*time.Second, "messages acknowledged", func() bool { return fake.Acked(msgs...) })
	r.stop(t)

	msgs = append(msgs, fake.Publish(pubsubtest.Deletion("g-while-stopped")), fake.Publish(pubsubtest.Deletion("g-1")))
	want = append(want, publish("g-while-stopped"))
	r = start(t, cfg, buf)
	s.waitFor(t, want...)
	waittest.Until(t, 30*time.Second, "messages acknowledged", func() bool { return fake.Acked(msgs...) })
	r.stop(t)
	expectOnce(t, s, want)
	for _, id := range crashed {
		if fake.Deliveries(id) < 2 {
			t.Errorf("message %s delivered %d times: the crashed process did not hold it", id, fake.Deliveries(id))
		}
	}
	if !strings.Contains(buf.String(), bad) || !strings.Contains(buf.String(), "dead-lettering") {
		t.Errorf("log does not say message %s was dead-lettered:\n%s", bad, buf.String())
	}
}
