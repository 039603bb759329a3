package eks_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/ingest/eks"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/cloudwatchtest"
	"github.com/vigil-k8s/vigil/internal/ingesttest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	cluster = "prod"
	region  = "eu-west-1"
	stream1 = "kube-apiserver-audit-1f2e3d"
	stream2 = "kube-apiserver-audit-9a8b7c"
)

var group = eks.LogGroup(cluster)

// event is an audit event line as EKS writes it to CloudWatch.
func event(auditID string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
		`"verb":"get","requestURI":"/api/v1/namespaces/default/secrets/db","user":{"username":"system:serviceaccount:default:app"},`+
		`"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"code":200}}`, auditID)
}

// env is one JetStream with vigil's streams and the fake CloudWatch.
type env struct {
	js      jetstream.JetStream
	logs    *cloudwatchtest.Logs
	ep      *cloudwatchtest.Endpoint
	metrics *metrics.Metrics
	logBuf  *logtest.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := cloudwatchtest.New()
	return &env{js: js, logs: logs, ep: logs.Serve(t), metrics: metrics.New(nil), logBuf: &logtest.Buffer{}}
}

func (e *env) kv(t *testing.T, bucket string) jetstream.KeyValue {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// running is one ingest replica polling through the real SDK client.
func (e *env) start(t *testing.T, holder string, mod func(*eks.Options)) *ingesttest.Running {
	t.Helper()
	o := eks.Options{
		Cluster:      cluster,
		Region:       region,
		Endpoint:     e.ep.URL,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		PollInterval: 20 * time.Millisecond,
		Overlap:      time.Minute,
		StartAt:      eks.StartBeginning,
		Retry:        backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Metrics:      e.metrics,
	}
	if mod != nil {
		mod(&o)
	}
	logger := slog.New(slog.NewTextHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := eks.New(context.Background(), o, logger)
	if err != nil {
		t.Fatal(err)
	}
	lease := bus.NewLease(e.kv(t, bus.BucketLeases), src.Key(), holder, bus.LeaseTTL, logger)
	src = src.With(bus.NewCursors(e.kv(t, bus.BucketCursors)), lease)
	return ingesttest.Start(t, src, bus.NewPublisher(e.js, cluster))
}

func (e *env) waitStored(t *testing.T, n int) {
	t.Helper()
	waittest.Until(t, 30*time.Second, fmt.Sprintf("%d events on AUDIT", n), func() bool {
		return natstest.Count(t, e.js, bus.StreamAudit) >= uint64(n)
	})
}

func ids(auditIDs ...string) map[string]bool {
	out := map[string]bool{}
	for _, id := range auditIDs {
		out[id+"/ResponseComplete"] = true
	}
	return out
}

// TestEventsSharingAMillisecondAcrossPollsAndARestart is the loss Falco's
// plugin has (falcosecurity/plugins#893): events of the same millisecond
// that CloudWatch makes visible one after the other, split across pages,
// polls and a restart, are each stored once.
//
// Without an overlap window the cursor alone must do it; with one, an
// event that becomes visible behind newer ones is caught too.
func TestEventsSharingAMillisecondAcrossPollsAndARestart(t *testing.T) {
	t.Run("no overlap", func(t *testing.T) { testSameMillisecond(t, -1) })
	t.Run("overlap", func(t *testing.T) { testSameMillisecond(t, time.Minute) })
}

func testSameMillisecond(t *testing.T, overlap time.Duration) {
	e := newEnv(t)
	withOverlap := func(o *eks.Options) { o.Overlap = overlap }
	t0 := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	// Five events of one millisecond in two streams: pages of three cut
	// through them.
	for i := range 5 {
		e.logs.Put(group, []string{stream1, stream2}[i%2], t0, event(fmt.Sprintf("a-%d", i)))
	}
	r := e.start(t, "replica-a", withOverlap)
	e.waitStored(t, 5)

	// More of the same millisecond become visible after the cursor
	// reached it, and one of the other stream arrives behind newer ones.
	e.logs.Put(group, stream2, t0, event("b-0"))
	e.logs.Put(group, stream1, t0.Add(time.Millisecond), event("b-1"))
	e.waitStored(t, 7)
	want := []string{"a-0", "a-1", "a-2", "a-3", "a-4", "b-0", "b-1", "c-0", "c-1"}
	if overlap > 0 {
		e.logs.Put(group, stream2, t0.Add(-time.Second), event("b-late"))
		e.waitStored(t, 8)
		want = append(want, "b-late")
		if n := testutil.ToFloat64(e.metrics.IngestLateEvents.WithLabelValues(eks.Kind, cluster)); n != 1 {
			t.Errorf("late events counted %v, want 1 (b-late)", n)
		}
	}
	r.Stop(t)

	// While stopped: one more at the cursor's millisecond and newer ones.
	e.logs.Put(group, stream1, t0.Add(time.Millisecond), event("c-0"))
	e.logs.Put(group, stream2, t0.Add(2*time.Millisecond), event("c-1"))
	e.start(t, "replica-a", withOverlap)
	e.waitStored(t, len(want))
	// The restart re-read the overlap: JetStream dropped those copies by
	// MsgID, and later polls find nothing more.
	calls := e.ep.Calls("FilterLogEvents")
	waittest.Until(t, 30*time.Second, "more polls", func() bool { return e.ep.Calls("FilterLogEvents") > calls+3 })
	natstest.ExpectAuditExactlyOnce(t, e.js, ids(want...))

	if lag := testutil.ToFloat64(e.metrics.IngestLag.WithLabelValues(eks.Kind, cluster)); lag < 9 {
		t.Errorf("lag %vs, want at least the 10s the events are old", lag)
	}
	if last := testutil.ToFloat64(e.metrics.IngestLastEvent.WithLabelValues(eks.Kind, cluster)); last != float64(t0.Add(2*time.Millisecond).UnixMilli())/1e3 {
		t.Errorf("last event time %v, want %v", last, float64(t0.Add(2*time.Millisecond).UnixMilli())/1e3)
	}
}

// TestFailuresAreRetriedAndCounted: a log group that does not exist yet
// (audit logging being enabled), throttling and empty pages with a token
// delay reading but lose nothing.
func TestFailuresAreRetriedAndCounted(t *testing.T) {
	e := newEnv(t)
	e.start(t, "replica-a", nil)
	waittest.Until(t, 30*time.Second, "a not-found error", func() bool {
		return testutil.ToFloat64(e.metrics.IngestErrors.WithLabelValues(eks.Kind, cluster, "not_found")) > 0
	})
	if !strings.Contains(e.logBuf.String(), "log group not found: enable the cluster's audit log") {
		t.Errorf("logs do not say the log group is missing:\n%s", e.logBuf.String())
	}
	e.logs.Throttle(3)
	e.logs.EmptyPages(2)
	now := time.Now()
	for i := range 4 {
		e.logs.Put(group, stream1, now.Add(time.Duration(i)*time.Millisecond), event(fmt.Sprintf("t-%d", i)))
	}
	e.waitStored(t, 4)
	natstest.ExpectAuditExactlyOnce(t, e.js, ids("t-0", "t-1", "t-2", "t-3"))
	if n := testutil.ToFloat64(e.metrics.IngestErrors.WithLabelValues(eks.Kind, cluster, "throttled")); n != 3 {
		t.Errorf("throttled requests counted %v, want 3", n)
	}
	if !strings.Contains(e.logBuf.String(), "reason=throttled") {
		t.Errorf("throttling is not logged:\n%s", e.logBuf.String())
	}
}

// TestTruncatedEventsAreDeadLetteredWithTheReason: CloudWatch cuts events
// over its size limit; such an event is not an audit event any more, and
// the dead letter says why, apart from input that never was JSON.
func TestTruncatedEventsAreDeadLetteredWithTheReason(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	full := event("big")
	cut := full[:len(full)/2]
	e.logs.Put(group, stream1, now, cut)
	truncatedID := e.logs.Put(group, stream1, now, full[:len(full)-20]+"[Truncated...]")
	e.logs.Put(group, stream1, now, "I0304 10:00:00.000000       1 not an event")
	e.logs.Put(group, stream1, now.Add(time.Millisecond), event("ok"))
	r := e.start(t, "replica-a", nil)
	e.waitStored(t, 1)
	waittest.Until(t, 30*time.Second, "3 dead letters", func() bool { return natstest.Count(t, e.js, bus.StreamDead) >= 3 })
	r.Stop(t)
	// A restart re-reads them in its overlap: the cursor knows them.
	e.start(t, "replica-a", nil)
	calls := e.ep.Calls("FilterLogEvents")
	waittest.Until(t, 30*time.Second, "polls after the restart", func() bool { return e.ep.Calls("FilterLogEvents") > calls+3 })

	natstest.ExpectAuditExactlyOnce(t, e.js, ids("ok"))
	dead := natstest.Messages(t, e.js, bus.StreamDead)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	truncated := 0
	for _, m := range dead {
		reason, src := m.Headers().Get(bus.HeaderReason), m.Headers().Get(bus.HeaderSource)
		if !strings.HasPrefix(src, "eks:"+group+":"+stream1+":") {
			t.Errorf("dead letter source %q does not name the log group, stream and event", src)
		}
		if strings.Contains(reason, "truncated by CloudWatch Logs") {
			truncated++
			if src == "eks:"+group+":"+stream1+":"+truncatedID && !strings.HasSuffix(string(m.Data()), "[Truncated...]") {
				t.Errorf("dead letter does not keep the message: %q", m.Data())
			}
		} else if strings.Contains(string(m.Data()), `"auditID"`) {
			t.Errorf("cut event dead-lettered as %q, not as truncated", reason)
		}
	}
	if truncated != 2 {
		t.Errorf("%d dead letters say truncated, want 2", truncated)
	}
	if n := testutil.ToFloat64(e.metrics.IngestTruncated.WithLabelValues(eks.Kind, cluster)); n != 2 {
		t.Errorf("truncated counted %v, want 2", n)
	}
}

// TestTruncated checks the truncation check the source uses on messages
// as CloudWatch delivers them.
func TestTruncated(t *testing.T) {
	full := event("x")
	for _, c := range []struct {
		msg  string
		want bool
	}{
		{full, false},
		{full[:len(full)-1], true},
		{full[:40], true},
		{full[:40] + "[Truncated...]", true},
		{full[:len(full)-30] + " [Truncated...]\n", true},
		{`{"kind":"Event",,}`, false},
		{"I0304 10:00:00 not json", false},
		{`[1,2`, false},
		{"", false},
	} {
		if got := provider.CloudWatchTruncated([]byte(c.msg)); got != c.want {
			t.Errorf("Truncated(%.60q) = %v, want %v", c.msg, got, c.want)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    eks.Options
		want string
	}{
		{eks.Options{Region: region}, "log_group or cluster is required"},
		{eks.Options{Cluster: "c", Region: region, StartAt: "middle"}, `start_at must be "end" or "beginning"`},
		{eks.Options{Cluster: "c", Region: region, PollInterval: -time.Second}, "poll_interval must be positive"},
		{eks.Options{Cluster: "c", Region: region, Endpoint: "logs.local"}, "endpoint must be an http:// or https:// URL"},
	} {
		_, err := eks.New(context.Background(), c.o, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", c.o, err, c.want)
		}
	}
}
