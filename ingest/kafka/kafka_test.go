package kafka_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/ingest/kafka"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/ingesttest"
	"github.com/vigil-k8s/vigil/internal/kafkatest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	topic   = "audit"
	group   = "vigil"
	cluster = "prod"
)

func event(auditID string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
		`"verb":"get","requestURI":"/api/v1/namespaces/default/secrets/db","user":{"username":"system:serviceaccount:default:app"},`+
		`"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"code":200}}`, auditID)
}

// running is one consumer group member storing into JetStream.
func run(t *testing.T, js jetstream.JetStream, o kafka.Options, logs *logtest.Buffer) *ingesttest.Running {
	t.Helper()
	o.Topics, o.Cluster, o.StartAt = []string{topic}, cluster, kafka.StartBeginning
	if o.Group == "" {
		o.Group = group
	}
	o.Retry = backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	s, err := kafka.New(o, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, s, bus.NewPublisher(js, cluster))
}

func jetStream(t *testing.T, streams bool) jetstream.JetStream {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if streams {
		ensureStreams(t, js)
	}
	return js
}

func ensureStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCommitsOnlyWhatJetStreamStored: while JetStream cannot store the
// events, the group commits nothing; once it can, every record is stored
// and committed.
func TestCommitsOnlyWhatJetStreamStored(t *testing.T) {
	k := kafkatest.New(t, topic, nil)
	js := jetStream(t, false)
	logs := &logtest.Buffer{}
	k.Produce(t, event("a"), event("b"), event("c"), event("d"))
	run(t, js, kafka.Options{Brokers: []string{k.Addr}}, logs)

	waittest.Until(t, 30*time.Second, "publish retried", func() bool { return strings.Count(logs.String(), "publish failed; retrying") >= 3 })
	if c := k.Committed(t, group); c != [kafkatest.Partitions]int64{-1, -1, -1} {
		t.Fatalf("committed %v before JetStream stored anything", c)
	}
	ensureStreams(t, js)
	waittest.Until(t, 30*time.Second, "every record committed", func() bool { return k.Lag(t, group) == 0 })
	natstest.ExpectAuditExactlyOnce(t, js, map[string]bool{"a/ResponseComplete": true, "b/ResponseComplete": true, "c/ResponseComplete": true, "d/ResponseComplete": true})
}

// TestStopCommitsAndLeaves: a stopped member has committed what it
// stored and left the group, so the next one reads on from there.
func TestStopCommitsAndLeaves(t *testing.T) {
	k := kafkatest.New(t, topic, nil)
	js := jetStream(t, true)
	m := metrics.New(nil)
	k.Produce(t, event("a"), event("b"), event("c"))
	r := run(t, js, kafka.Options{Brokers: []string{k.Addr}, Metrics: m}, &logtest.Buffer{})
	natstest.WaitAuditEvents(t, js, 3, 30*time.Second)
	r.Stop(t)
	if n := k.Lag(t, group); n != 0 {
		t.Errorf("group lags %d records after a stop, want 0", n)
	}
	if n := k.Members(t, group); n != 0 {
		t.Errorf("%d members after a stop, want 0: it left the group", n)
	}
	if v := testutil.ToFloat64(m.IngestLastEvent.WithLabelValues(kafka.Kind, cluster)); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last event time %v, want the records' time", v)
	}
}

// TestSASLOverTLS authenticates with each mechanism, over TLS, as Event
// Hubs and managed Kafka services require; a wrong password is an auth
// error, counted, and nothing is read.
func TestSASLOverTLS(t *testing.T) {
	pki := pkitest.New(t)
	cert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	k := kafkatest.New(t, topic,
		[]kfake.Opt{
			kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
			kfake.EnableSASL(),
			kfake.Superuser(kafka.SASLScram256, "admin", "admin-pw"),
			kfake.Superuser(kafka.SASLScram512, "vigil512", "pw-512"),
			kfake.Superuser(kafka.SASLPlain, "$ConnectionString", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"),
		},
		kgo.DialTLSConfig(&tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism()))
	k.Produce(t, event("a"), event("b"), event("c"))
	clientTLS := &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}

	for _, c := range []struct{ mech, user, pass string }{
		{kafka.SASLPlain, "$ConnectionString", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"},
		{kafka.SASLScram256, "admin", "admin-pw"},
		{"scram-sha-512", "vigil512", "pw-512"},
	} {
		t.Run(c.mech, func(t *testing.T) {
			js := jetStream(t, true)
			mech, err := kafka.NewSASL(c.mech, c.user, func() (string, error) { return c.pass, nil })
			if err != nil {
				t.Fatal(err)
			}
			o := kafka.Options{Brokers: []string{k.Addr}, TLS: clientTLS, SASL: mech, Group: "group-" + c.user}
			r := run(t, js, o, &logtest.Buffer{})
			natstest.WaitAuditEvents(t, js, 3, 30*time.Second)
			r.Stop(t)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		js := jetStream(t, true)
		m := metrics.New(nil)
		mech, err := kafka.NewSASL(kafka.SASLScram256, "admin", func() (string, error) { return "guess", nil })
		if err != nil {
			t.Fatal(err)
		}
		logs := &logtest.Buffer{}
		run(t, js, kafka.Options{Brokers: []string{k.Addr}, TLS: clientTLS, SASL: mech, Metrics: m}, logs)
		// Kafka answers SASL_AUTHENTICATION_FAILED ("auth"); kfake closes
		// the connection ("network").
		waittest.Until(t, 30*time.Second, "connection errors counted", func() bool {
			return testutil.ToFloat64(m.IngestErrors.WithLabelValues(kafka.Kind, cluster, "auth"))+
				testutil.ToFloat64(m.IngestErrors.WithLabelValues(kafka.Kind, cluster, "network")) > 0
		})
		if n := natstest.CountAuditEvents(t, js); n != 0 {
			t.Errorf("%d events stored with a wrong password", n)
		}
	})
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	for name, c := range map[string]struct {
		o    kafka.Options
		want string
	}{
		"no brokers":  {kafka.Options{Topics: []string{"a"}, Group: "g"}, "brokers are required"},
		"bad broker":  {kafka.Options{Brokers: []string{"kafka"}, Topics: []string{"a"}, Group: "g"}, `broker "kafka" is not host:port`},
		"no topics":   {kafka.Options{Brokers: []string{"k:9092"}, Group: "g"}, "topics are required"},
		"no group":    {kafka.Options{Brokers: []string{"k:9092"}, Topics: []string{"a"}}, "group is required"},
		"bad startAt": {kafka.Options{Brokers: []string{"k:9092"}, Topics: []string{"a"}, Group: "g", StartAt: "now"}, `start_at must be "end" or "beginning", got "now"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := kafka.New(c.o, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want an error with %q", err, c.want)
			}
		})
	}
	if _, err := kafka.NewSASL("GSSAPI", "u", nil); err == nil || !strings.Contains(err.Error(), `unknown SASL mechanism "GSSAPI"`) {
		t.Errorf("NewSASL(GSSAPI): %v", err)
	}
}

// failCommits makes the broker refuse every offset commit while fail is
// set.
func failCommits(k *kafkatest.Kafka, fail *atomic.Bool) {
	k.Cluster.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		if !fail.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestRecordsReadAgainAreStoredOnce: records stored but never committed
// (as after a crash) are read again by the next member, and JetStream
// keeps one copy of each event.
func TestRecordsReadAgainAreStoredOnce(t *testing.T) {
	k := kafkatest.New(t, topic, nil)
	var fail atomic.Bool
	fail.Store(true)
	failCommits(k, &fail)
	js := jetStream(t, true)
	logs := &logtest.Buffer{}
	k.Produce(t, event("a"), event("b"), event("c"))
	r := run(t, js, kafka.Options{Brokers: []string{k.Addr}}, logs)
	natstest.WaitAuditEvents(t, js, 3, 30*time.Second)
	waittest.Until(t, 30*time.Second, "a commit given up", func() bool { return strings.Contains(logs.String(), "commit failed; giving up") })
	r.Stop(t)
	if c := k.Committed(t, group); c != [kafkatest.Partitions]int64{-1, -1, -1} {
		t.Fatalf("committed %v though the broker refused every commit", c)
	}

	fail.Store(false)
	k.Produce(t, event("d"))
	run(t, js, kafka.Options{Brokers: []string{k.Addr}}, logs)
	waittest.Until(t, 30*time.Second, "every record committed", func() bool { return k.Lag(t, group) == 0 })
	natstest.ExpectAuditExactlyOnce(t, js, map[string]bool{"a/ResponseComplete": true, "b/ResponseComplete": true, "c/ResponseComplete": true, "d/ResponseComplete": true})
}
