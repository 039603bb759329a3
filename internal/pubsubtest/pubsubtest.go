// Package pubsubtest runs Google's in-process Pub/Sub (pstest) as a GKE
// cluster's log sink fills it: a topic of LogEntries and a subscription
// for vigil.
package pubsubtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"go.uber.org/goleak"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Names of the fake's project, topic and subscription.
const (
	Project      = "demo-project"
	Topic        = "projects/" + Project + "/topics/gke-audit"
	Subscription = "vigil"
)

// Fake is the Pub/Sub server.
type Fake struct {
	Srv *pstest.Server
}

// New starts the server with the topic and, when subscribe, vigil's
// subscription; it stops when the test ends.
func New(t testing.TB, subscribe bool) *Fake {
	t.Helper()
	f := &Fake{Srv: pstest.NewServer()}
	t.Cleanup(func() { _ = f.Srv.Close() })
	if _, err := f.Srv.GServer.CreateTopic(context.Background(), &pubsubpb.Topic{Name: Topic}); err != nil {
		t.Fatal(err)
	}
	if subscribe {
		f.Subscribe(t)
	}
	return f
}

// Addr is the server's host:port, as PUBSUB_EMULATOR_HOST takes it.
func (f *Fake) Addr() string { return f.Srv.Addr }

// ClientOptions connect a client to the server, without TLS or
// credentials.
func (f *Fake) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(f.Srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Subscribe creates vigil's subscription on the topic: it gets what is
// published from then on.
func (f *Fake) Subscribe(t testing.TB) {
	t.Helper()
	_, err := f.Srv.GServer.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name: "projects/" + Project + "/subscriptions/" + Subscription, Topic: Topic, AckDeadlineSeconds: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Publish sends data as the log sink would and returns the message id.
func (f *Fake) Publish(data []byte) string { return f.Srv.Publish(Topic, data, nil) }

// Acked reports whether every message of ids was acknowledged.
func (f *Fake) Acked(ids ...string) bool {
	for _, id := range ids {
		if m := f.Srv.Message(id); m == nil || m.Acks == 0 {
			return false
		}
	}
	return true
}

// Crash receives every message published so far, as an ingest process
// would, and dies holding them: neither acknowledged nor nacked, they come
// back only once their ack deadline (10 s) expires. It returns their ids.
func (f *Fake) Crash(t testing.TB, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pubsub.NewClient(ctx, Project, f.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub := c.Subscriber(Subscription)
	sub.ReceiveSettings.MaxDurationPerAckExtension = 10 * time.Second
	// A timeout of zero stops at once, without nacking what is in hand.
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Timeout: 0}
	var mu sync.Mutex
	var ids []string
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	err = sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, m.ID)
		if len(ids) == want {
			stop()
		}
	})
	if err != nil || len(ids) < want {
		t.Fatalf("crashing receiver got %d of %d messages: %v", len(ids), want, err)
	}
	return ids
}

// Deliveries is how many times the message id was delivered.
func (f *Fake) Deliveries(id string) int { return f.Srv.Message(id).Deliveries }

// Deletion is a GKE Admin Activity entry, as a log sink delivers it, for a
// deployment named auditID deleted in namespace default by
// mallory@example.com: the default pack's deployment-deleted-in-default
// alerts on it.
func Deletion(auditID string) []byte {
	return fmt.Appendf(nil, `{"insertId":%[1]q,"labels":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"ops\""},`+
		`"logName":"projects/demo/logs/cloudaudit.googleapis.com%%2Factivity","operation":{"first":true,"id":%[1]q,"last":true,"producer":"k8s.io"},`+
		`"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"mallory@example.com"},`+
		`"authorizationInfo":[{"granted":true,"permission":"io.k8s.apps.v1.deployments.delete","resource":"apps/v1/namespaces/default/deployments/%[1]s"}],`+
		`"methodName":"io.k8s.apps.v1.deployments.delete","requestMetadata":{"callerIp":"203.0.113.7","callerSuppliedUserAgent":"kubectl/v1.30.1"},`+
		`"resourceName":"apps/v1/namespaces/default/deployments/%[1]s","serviceName":"k8s.io","status":{}},`+
		`"receiveTimestamp":%[2]q,"resource":{"labels":{"cluster_name":"prod","location":"europe-west1","project_id":"demo"},"type":"k8s_cluster"},`+
		`"severity":"NOTICE","timestamp":%[2]q}`, auditID, time.Now().UTC().Format(time.RFC3339Nano))
}

// IgnoreLeaks are the goroutines of the Pub/Sub client that outlive it, for
// goleak: OpenCensus's worker, started when the package loads, and each
// stream's keep-alive loop, which waits on tickers that Receive stops.
// Crash's receiver stops with a zero timeout, which makes Receive return
// before its iterator has stopped: the iterator's sender, and the goroutine
// waiting on it, outlive the call.
func IgnoreLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("cloud.google.com/go/pubsub/v2.(*messageIterator).streamKeepAliveHandler"),
		goleak.IgnoreTopFunction("cloud.google.com/go/pubsub/v2.(*messageIterator).sender"),
		goleak.IgnoreAnyFunction("cloud.google.com/go/pubsub/v2.(*messageIterator).stop"),
	}
}
