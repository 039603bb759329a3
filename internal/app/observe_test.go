package app

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// TestAFailedPublishIsCountedAsAnErrorOfItsSource checks that a batch
// JetStream does not store shows in vigil_ingest_errors_total under the
// source that tried, whatever the source.
func TestAFailedPublishIsCountedAsAnErrorOfItsSource(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	// No streams: nothing answers on the AUDIT subject.
	m := metrics.New(prometheus.NewRegistry())
	p := &meteredPublisher{SegmentPublisher: bus.NewSegmentPublisher(js, "c1", bus.SegmentOptions{}), m: m, source: "file", cluster: "c1"}
	raw, err := audit.ParseRaw([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete"}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Publish(ctx, []audit.Raw{raw}); err == nil {
		t.Fatal("Publish stored an event with no AUDIT stream")
	}
	if got := testutil.ToFloat64(m.IngestErrors.WithLabelValues("file", "c1", ingest.ReasonPublish)); got != 1 {
		t.Errorf("vigil_ingest_errors_total{source=file,reason=publish} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.IngestEvents.WithLabelValues("file", "c1")); got != 0 {
		t.Errorf("vigil_ingest_events_total = %v after a failed publish, want 0", got)
	}
	nc.Close()
}
