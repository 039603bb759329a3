package app

import (
	"context"
	"fmt"
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
	p := newMeteredPublisher(bus.NewSegmentPublisher(js, "c1", bus.SegmentOptions{}), m, "file", "c1", nil, true)
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

func auditEvents(t *testing.T, prefix string, n int) []audit.Raw {
	t.Helper()
	out := make([]audit.Raw, 0, n)
	for i := range n {
		r, err := audit.ParseRaw(fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"%s-%d","stage":"ResponseComplete","verb":"get"}`, prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// ingestCounts is what a user reads off /metrics for a source: events
// stored, and events JetStream dropped as already stored.
func ingestCounts(m *metrics.Metrics, source, cluster string) (stored, duplicates float64) {
	return testutil.ToFloat64(m.IngestEvents.WithLabelValues(source, cluster)),
		testutil.ToFloat64(m.IngestDuplicates.WithLabelValues(source, cluster))
}

func startAudit(t *testing.T) (*metrics.Metrics, func() int, func(kind string, segments bool) *meteredPublisher) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	count := func() int { return natstest.CountAuditEvents(t, js) }
	source := func(kind string, segments bool) *meteredPublisher {
		var bp *bus.Publisher
		if segments {
			bp = bus.NewSegmentPublisher(js, "c1", bus.SegmentOptions{Events: 16})
		} else {
			bp = bus.NewPublisher(js, "c1")
		}
		return newMeteredPublisher(bp, m, kind, "c1", nil, true)
	}
	return m, count, source
}

// TestEventsTwoSourcesPublishAreStoredOnceAndTheCopiesCountedAsDuplicates
// is two sources reading the same apiserver's events under the same
// message ids (eks and kafka name each event auditID/stage): AUDIT holds
// each once, vigil_ingest_events_total counts it once, under the source
// that stored it first, and vigil_ingest_duplicates_total counts the copies
// of the other.
func TestEventsTwoSourcesPublishAreStoredOnceAndTheCopiesCountedAsDuplicates(t *testing.T) {
	m, stored, source := startAudit(t)
	ctx := context.Background()
	eks, kafka := source("eks", false), source("kafka", false)
	if got, dup := ingestCounts(m, "kafka", "c1"); got != 0 || dup != 0 {
		t.Fatalf("before any event, kafka: events %v, duplicates %v, want both shown at 0", got, dup)
	}
	batch := auditEvents(t, "both", 40)
	if err := ingest.Store(ctx, eks, batch, nil); err != nil {
		t.Fatal(err)
	}
	// The second source reads the same 40 and 10 newer ones.
	if err := ingest.Store(ctx, kafka, append(auditEvents(t, "both", 40), auditEvents(t, "new", 10)...), nil); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got != 50 {
		t.Fatalf("AUDIT holds %d events, want 50", got)
	}
	for _, c := range []struct {
		source          string
		stored, dropped float64
	}{{"eks", 40, 0}, {"kafka", 10, 40}} {
		got, dup := ingestCounts(m, c.source, "c1")
		if got != c.stored || dup != c.dropped {
			t.Errorf("%s: vigil_ingest_events_total %v, vigil_ingest_duplicates_total %v; want %v and %v", c.source, got, dup, c.stored, c.dropped)
		}
	}
	e, _ := ingestCounts(m, "eks", "c1")
	k, _ := ingestCounts(m, "kafka", "c1")
	if e+k != float64(stored()) {
		t.Errorf("the sources' vigil_ingest_events_total add up to %v, AUDIT holds %d", e+k, stored())
	}
}

// TestADuplicateSegmentCountsEveryEventItHolds: a segment JetStream
// already holds is dropped whole, so all of its events are duplicates.
// The webhook's are named by their events (a batch sent again), a file's
// by the span they come from (re-published after a crash).
func TestADuplicateSegmentCountsEveryEventItHolds(t *testing.T) {
	m, stored, source := startAudit(t)
	ctx := context.Background()

	webhook := source("webhook", true)
	batch := auditEvents(t, "hook", 40) // segments of 16, 16 and 8
	for range 2 {
		if err := ingest.Store(ctx, webhook, batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, dup := ingestCounts(m, "webhook", "c1"); got != 40 || dup != 40 {
		t.Errorf("an EventList sent twice: webhook events %v, duplicates %v; want 40 and 40", got, dup)
	}

	file := source("file", true)
	lines := auditEvents(t, "log", 30)
	if err := ingest.StoreSegments(ctx, file, lines[:20], []int{12, 20}, []string{"file/f/0-12", "file/f/12-20"}, nil); err != nil {
		t.Fatal(err)
	}
	// After a crash: the two segments again, and a new one.
	if err := ingest.StoreSegments(ctx, file, lines, []int{12, 20, 30}, []string{"file/f/0-12", "file/f/12-20", "file/f/20-30"}, nil); err != nil {
		t.Fatal(err)
	}
	if got, dup := ingestCounts(m, "file", "c1"); got != 30 || dup != 20 {
		t.Errorf("segments re-published: file events %v, duplicates %v; want 30 and 20", got, dup)
	}
	if got := stored(); got != 70 {
		t.Errorf("AUDIT holds %d events, want 70", got)
	}
}
