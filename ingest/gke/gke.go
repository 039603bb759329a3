// Package gke reads the audit events of a Google Kubernetes Engine cluster
// from a Pub/Sub subscription, which a Cloud Logging sink of the cluster's
// Kubernetes audit entries feeds: each message is one LogEntry, which
// internal/audit/provider turns into an audit.k8s.io/v1 Event.
//
// A message is acknowledged only once its events are stored in JetStream
// (or dead-lettered, for what is not a usable audit entry): a crash or a
// stop before then leaves it to Pub/Sub to deliver again. Pub/Sub delivers
// at least once anyway, and several replicas share a subscription; both
// are harmless because each event is published under its own MsgID
// (auditID/stage), which JetStream drops when it has it already.
package gke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Defaults of Options.
const (
	// DefaultMaxOutstandingMessages bounds the messages received and not
	// yet acknowledged. A GKE audit entry is a few KiB: a thousand keeps
	// publishing busy without holding much.
	DefaultMaxOutstandingMessages = 1000
	// DefaultMaxOutstandingBytes bounds their size (the client's default
	// is 1 GB, more than an ingest pod is given).
	DefaultMaxOutstandingBytes = 64 << 20
	// DefaultMaxBatchEvents bounds the events of one publish: the events
	// of the messages waiting are stored together, and acknowledged
	// together once stored.
	DefaultMaxBatchEvents = 500
)

// DefaultRetry paces the retries of a subscription that cannot be read
// (missing, not allowed, Pub/Sub unavailable) and of a publish that failed.
var DefaultRetry = backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: true}

// Kind is this source's name in metrics and dead letters.
const Kind = "gke"

// Options configure a GKE source. Zero fields take the defaults.
type Options struct {
	// Project is the Google Cloud project of the subscription; it may be
	// left out when Subscription is a full name.
	Project string
	// Subscription is read: an id in Project, or
	// projects/<project>/subscriptions/<id>.
	Subscription string
	// Cluster is stamped on the events (metrics label).
	Cluster string
	// Endpoint (host:port) replaces Pub/Sub's (a regional or Private
	// Service Connect endpoint). An emulator is set the client library's
	// way, by PUBSUB_EMULATOR_HOST in the environment.
	Endpoint string
	// MaxOutstandingMessages and MaxOutstandingBytes bound what is
	// received and not yet acknowledged (DefaultMaxOutstandingMessages,
	// DefaultMaxOutstandingBytes).
	MaxOutstandingMessages int
	MaxOutstandingBytes    int
	// MaxBatchEvents bounds the events of one publish
	// (DefaultMaxBatchEvents).
	MaxBatchEvents int
	// AckExtension, 10s to 600s, is how far each extension of a message's
	// ack deadline reaches, and so how long Pub/Sub holds back a message
	// sent on a stream that broke before it arrived; zero leaves it to
	// the client (a minute at first).
	AckExtension time.Duration
	// Retry paces the retries of a subscription that cannot be read and
	// of a publish or dead letter that failed (DefaultRetry).
	Retry backoff.Policy
	// ClientOptions are added to the Pub/Sub client's (tests); without
	// them it authenticates with Application Default Credentials, which
	// workload identity provides in a GKE pod.
	ClientOptions []option.ClientOption
	// Metrics receive what only the source knows (lag, errors); nil:
	// metrics of its own, registered nowhere.
	Metrics *metrics.Metrics
}

// Source reads one subscription.
type Source struct {
	opts    Options
	client  *pubsub.Client
	sub     *pubsub.Subscriber
	log     *slog.Logger
	metrics *metrics.Metrics
}

// New checks o and builds the Pub/Sub client, which finds its credentials
// now: a pod without them fails at start, not at the first message.
// Nothing is received until Run; Close releases the client.
func New(ctx context.Context, o Options, logger *slog.Logger) (*Source, error) {
	project, id, err := SubscriptionName(o.Project, o.Subscription)
	if err != nil {
		return nil, fmt.Errorf("gke source: %w", err)
	}
	o.Project, o.Subscription = project, "projects/"+project+"/subscriptions/"+id
	where := "gke source " + o.Subscription
	for _, n := range []struct {
		name  string
		v     *int
		deflt int
	}{
		{"max_outstanding_messages", &o.MaxOutstandingMessages, DefaultMaxOutstandingMessages},
		{"max_outstanding_bytes", &o.MaxOutstandingBytes, DefaultMaxOutstandingBytes},
		{"max_batch_events", &o.MaxBatchEvents, DefaultMaxBatchEvents},
	} {
		switch {
		case *n.v < 0:
			return nil, fmt.Errorf("%s: %s must be positive, got %d", where, n.name, *n.v)
		case *n.v == 0:
			*n.v = n.deflt
		}
	}
	switch {
	case o.Retry == (backoff.Policy{}):
		o.Retry = DefaultRetry
	case !o.Retry.Valid():
		return nil, fmt.Errorf("%s: retry backoff must have 0 < initial <= max, got %+v", where, o.Retry)
	}
	if o.AckExtension != 0 && (o.AckExtension < 10*time.Second || o.AckExtension > 600*time.Second) {
		return nil, fmt.Errorf("%s: ack extension must be between 10s and 600s, got %s", where, o.AckExtension)
	}
	if o.Endpoint != "" && strings.Contains(o.Endpoint, "://") {
		return nil, fmt.Errorf("%s: endpoint must be host:port (gRPC), got %q", where, o.Endpoint)
	}
	copts := append([]option.ClientOption{}, o.ClientOptions...)
	if o.Endpoint != "" {
		copts = append([]option.ClientOption{option.WithEndpoint(o.Endpoint)}, copts...)
	}
	client, err := pubsub.NewClient(ctx, project, copts...)
	if err != nil {
		return nil, fmt.Errorf("%s: Pub/Sub client: %w", where, err)
	}
	sub := client.Subscriber(o.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = o.MaxOutstandingMessages
	sub.ReceiveSettings.MaxOutstandingBytes = o.MaxOutstandingBytes
	sub.ReceiveSettings.MaxDurationPerAckExtension = o.AckExtension
	// A stop waits for the messages in hand, which are nacked as soon as
	// ctx ends: Pub/Sub delivers them again at once, to another replica or
	// the next start. (Shutting down with NackImmediately instead drops
	// the nack of a message that arrives as the stream closes, and Pub/Sub
	// holds it back until its ack deadline.)
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorWaitForProcessing, Timeout: -1}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Source{
		opts:    o,
		client:  client,
		sub:     sub,
		log:     logger.With("source", Kind, "subscription", o.Subscription),
		metrics: o.Metrics,
	}, nil
}

// SubscriptionName reads a subscription given as an id in project or as
// its full name.
func SubscriptionName(project, sub string) (string, string, error) {
	if sub == "" {
		return "", "", errors.New("subscription is required")
	}
	if strings.Contains(sub, "/") {
		parts := strings.Split(sub, "/")
		if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" || parts[1] == "" || parts[3] == "" {
			return "", "", fmt.Errorf("subscription %q is neither an id nor projects/<project>/subscriptions/<id>", sub)
		}
		if project != "" && project != parts[1] {
			return "", "", fmt.Errorf("subscription %q is in project %q, not in project %q", sub, parts[1], project)
		}
		return parts[1], parts[3], nil
	}
	if project == "" {
		return "", "", fmt.Errorf("project is required with the subscription id %q", sub)
	}
	return project, sub, nil
}

// Close releases the Pub/Sub client, once Run has returned.
func (s *Source) Close() error { return s.client.Close() }

// Run receives messages until ctx is done; it returns nil then. A
// subscription that cannot be read is retried for as long as it takes:
// the error is logged and counted.
func (s *Source) Run(ctx context.Context, pub ingest.Publisher) error {
	b := newBatcher(s, pub)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.run(ctx)
	}()
	defer func() { <-done }()
	s.log.Info("receiving from Pub/Sub", "max_outstanding_messages", s.opts.MaxOutstandingMessages, "max_outstanding_bytes", s.opts.MaxOutstandingBytes)
	err := backoff.Retry(ctx, s.opts.Retry, func(ctx context.Context) error {
		err := s.sub.Receive(ctx, func(mctx context.Context, m *pubsub.Message) { s.handle(mctx, b, m) })
		if err == nil && ctx.Err() == nil {
			err = errors.New("receive ended")
		}
		return err
	}, backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		reason := classify(err)
		s.metrics.IngestErrors.WithLabelValues(Kind, s.opts.Cluster, reason).Inc()
		s.log.Error("receiving failed; retrying"+hint(reason), "err", err, "reason", reason, "attempt", attempt, "retry_in", wait)
	}))
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
