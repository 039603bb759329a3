// Package kafka reads audit events from Kafka topics as a member of a
// consumer group: from the Event Hubs Kafka endpoint an AKS cluster's
// diagnostic settings deliver to, or from any pipeline (Fluent Bit,
// Vector) that writes the apiserver's audit log to Kafka.
//
// Each record is decoded by the provider package: an audit Event, an
// EventList, an AKS diagnostic record or a {"records": [...]} document of
// them. A group offset is committed only once the events of every record
// before it are stored in JetStream (or dead-lettered), so a crash or a
// rebalance re-reads records rather than losing them; the events read
// again carry their own MsgID (auditID/stage), which JetStream drops as
// duplicates. Rebalances wait for the records being stored: partitions
// are never revoked between a poll and its commit.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Kind is this source's name in metrics and dead letters.
const Kind = "kafka"

// Where a group without committed offsets starts (Options.StartAt).
const (
	StartEnd       = "end"
	StartBeginning = "beginning"
)

// Defaults of Options.
const (
	// DefaultMaxPollRecords bounds the records stored, and committed, as
	// one batch.
	DefaultMaxPollRecords = 500
	// DefaultFetchMaxBytes bounds one fetch response. With
	// DefaultMaxConcurrentFetches, what is buffered ahead of the records
	// being stored stays within a few tens of MiB.
	DefaultFetchMaxBytes = 8 << 20
	// DefaultMaxConcurrentFetches bounds the fetches in flight.
	DefaultMaxConcurrentFetches = 3
)

// DefaultRetry paces the retries of a publish or commit that failed.
var DefaultRetry = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: true}

// commitAttempts bounds the retries of one commit: an offset not committed
// is committed with the next batch, or its records are read again, which
// is harmless.
const commitAttempts = 5

// Options configure a Kafka source. Zero fields take the defaults.
type Options struct {
	// Cluster is stamped on the events (metrics label).
	Cluster string
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics are read; Group is the consumer group sharing them.
	Topics []string
	Group  string
	// StartAt is where a group without committed offsets starts:
	// StartEnd (the default) or StartBeginning.
	StartAt string
	// TLS, when set, encrypts the connections (required by Event Hubs).
	TLS *tls.Config
	// SASL, when set, authenticates (see NewSASL).
	SASL sasl.Mechanism
	// MaxPollRecords, FetchMaxBytes and MaxConcurrentFetches bound what
	// is buffered (the Default* constants).
	MaxPollRecords       int
	FetchMaxBytes        int32
	MaxConcurrentFetches int
	// Retry paces the retries of a publish or commit (DefaultRetry).
	Retry backoff.Policy
	// Metrics receive lag, last event time and errors; nil: metrics of
	// its own, registered nowhere.
	Metrics *metrics.Metrics
}

// Source is one consumer group member.
type Source struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics.Metrics
}

// New checks o; nothing is connected until Run.
func New(o Options, logger *slog.Logger) (*Source, error) {
	where := "kafka source"
	if len(o.Brokers) == 0 {
		return nil, errors.New(where + ": brokers are required")
	}
	for _, b := range o.Brokers {
		if !strings.Contains(b, ":") {
			return nil, fmt.Errorf("%s: broker %q is not host:port", where, b)
		}
	}
	if len(o.Topics) == 0 {
		return nil, errors.New(where + ": topics are required")
	}
	if o.Group == "" {
		return nil, errors.New(where + ": group is required")
	}
	where += " " + strings.Join(o.Topics, ",")
	switch o.StartAt {
	case "":
		o.StartAt = StartEnd
	case StartEnd, StartBeginning:
	default:
		return nil, fmt.Errorf("%s: start_at must be %q or %q, got %q", where, StartEnd, StartBeginning, o.StartAt)
	}
	if o.MaxPollRecords < 0 || o.FetchMaxBytes < 0 || o.MaxConcurrentFetches < 0 {
		return nil, fmt.Errorf("%s: buffer bounds must be positive", where)
	}
	if o.MaxPollRecords == 0 {
		o.MaxPollRecords = DefaultMaxPollRecords
	}
	if o.FetchMaxBytes == 0 {
		o.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if o.MaxConcurrentFetches == 0 {
		o.MaxConcurrentFetches = DefaultMaxConcurrentFetches
	}
	switch {
	case o.Retry == (backoff.Policy{}):
		o.Retry = DefaultRetry
	case !o.Retry.Valid():
		return nil, fmt.Errorf("%s: retry backoff must have 0 < initial <= max, got %+v", where, o.Retry)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Source{
		opts:    o,
		log:     logger.With("source", Kind, "topics", strings.Join(o.Topics, ","), "group", o.Group),
		metrics: o.Metrics,
	}, nil
}

// clientOptions are the franz-go options of a member; onRevoked commits
// what was stored of the partitions taken away.
func (s *Source) clientOptions(c *consumer) []kgo.Opt {
	o := s.opts
	reset := kgo.NewOffset().AtEnd()
	if o.StartAt == StartBeginning {
		reset = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topics...),
		kgo.ConsumeResetOffset(reset),
		// Offsets are committed by the source, after JetStream stored
		// the events, never on a timer.
		kgo.DisableAutoCommit(),
		// No partition is revoked between a poll and the commit of what
		// it returned: a rebalance neither loses a batch being stored
		// nor lets two members commit the same partition.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.FetchMaxBytes(o.FetchMaxBytes),
		kgo.MaxConcurrentFetches(o.MaxConcurrentFetches),
		kgo.WithLogger(kgoLogger{s.log}),
	}
	if o.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(o.TLS.Clone()))
	}
	if o.SASL != nil {
		opts = append(opts, kgo.SASL(o.SASL))
	}
	return opts
}

// Run consumes until ctx is done, then commits what it stored, leaves the
// group and returns nil. Failures to fetch, store or commit are retried.
func (s *Source) Run(ctx context.Context, pub ingest.Publisher) error {
	c := &consumer{s: s, pub: pub, pending: map[partition]*kgo.Record{}}
	cl, err := kgo.NewClient(s.clientOptions(c)...)
	if err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	c.cl = cl
	s.log.Info("consuming", "brokers", strings.Join(s.opts.Brokers, ","), "start_at", s.opts.StartAt)
	c.consume(ctx)
	// What was stored but not committed yet is committed on the way out
	// (the final revoke); the group then hands the partitions to the
	// other members at once rather than after the session timeout.
	cl.CloseAllowingRebalance()
	s.log.Info("left the consumer group")
	return nil
}

// kgoLogger sends franz-go's warnings and errors to slog; its info and
// debug lines are for debugging franz-go itself.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.log.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
