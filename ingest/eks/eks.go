// Package eks reads the audit events of an Amazon EKS cluster from
// CloudWatch Logs, where EKS delivers them once the cluster's "audit"
// control-plane log type is enabled (log group /aws/eks/<cluster>/cluster,
// streams kube-apiserver-audit-*).
//
// It polls FilterLogEvents from a cursor: the timestamp of the newest
// event stored and the CloudWatch event ids already stored at that
// millisecond, so that events sharing a millisecond are neither skipped
// nor read twice. Each poll reads again an overlap window before the
// cursor, because CloudWatch makes events visible late (one apiserver's
// stream behind another's); events already read are recognised by their
// event id, and those re-read after a restart carry their own MsgID
// (auditID/stage), which JetStream drops as duplicates. The cursor is
// saved only after JetStream acknowledged the events before it.
//
// Of several replicas, only the one holding the lease polls; another takes
// over when it stops or dies.
package eks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Defaults of Options.
const (
	// DefaultStreamPrefix names the streams of kube-apiserver's audit log
	// in an EKS cluster's log group (one stream per apiserver).
	DefaultStreamPrefix = "kube-apiserver-audit-"
	// DefaultPollInterval is the wait between polls that found nothing
	// more to read. EKS delivers its logs to CloudWatch seconds after
	// they are written, so polling faster mostly finds nothing.
	DefaultPollInterval = 10 * time.Second
	// DefaultOverlap is how far before the cursor each poll reads again.
	// Events CloudWatch makes visible later than this after newer ones
	// are missed; each poll re-reads this much of the log.
	DefaultOverlap = 30 * time.Second
)

// DefaultRetry paces the retries of a CloudWatch request, a publish or a
// cursor save that failed. Throttling is CloudWatch asking for less: the
// wait grows to a minute, jittered so that the sources sharing an
// account's quota spread out.
var DefaultRetry = backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: true}

// Where a log group without cursor is read from (Options.StartAt).
const (
	StartEnd       = "end"
	StartBeginning = "beginning"
)

// Kind is this source's name in metrics and dead letters.
const Kind = "eks"

// LogGroup is the log group EKS writes a cluster's control-plane logs to.
func LogGroup(cluster string) string { return "/aws/eks/" + cluster + "/cluster" }

// Options configure an EKS source. Zero fields take the defaults.
type Options struct {
	// Cluster is the cluster stamped on the events (metrics label) and,
	// without LogGroup, the EKS cluster whose log group is read.
	Cluster string
	// Region of the log group; empty takes the SDK's (AWS_REGION, the
	// shared config files).
	Region string
	// LogGroup is read; default LogGroup(Cluster).
	LogGroup string
	// StreamPrefix selects the streams; default DefaultStreamPrefix.
	StreamPrefix string
	// PollInterval is the wait between polls (DefaultPollInterval).
	PollInterval time.Duration
	// Overlap is how far before the cursor each poll reads again
	// (DefaultOverlap); negative means none.
	Overlap time.Duration
	// StartAt is where a log group without a cursor is read from:
	// StartEnd (the default: from now) or StartBeginning.
	StartAt string
	// Endpoint replaces CloudWatch Logs' endpoint (a VPC endpoint, tests).
	Endpoint string
	// Credentials replace the SDK's default chain (environment, web
	// identity as IRSA and EKS Pod Identity provide it, shared files,
	// instance roles); nil keeps the chain.
	Credentials aws.CredentialsProvider
	// Retry paces the retries of a request, publish or cursor save that
	// failed (DefaultRetry).
	Retry backoff.Policy
	// Metrics receive what only the source knows (lag, errors, truncated
	// and late events); nil: metrics of its own, registered nowhere.
	Metrics *metrics.Metrics
}

// Cursors keep where a source has read to, across restarts and replicas.
type Cursors interface {
	// Load returns the cursor saved under key, nil when there is none.
	Load(ctx context.Context, key string) ([]byte, error)
	Save(ctx context.Context, key string, value []byte) error
}

// Lease picks the one replica that polls.
type Lease interface {
	// Hold waits until this replica holds the lease and returns a context
	// that ends when it is lost, and release to give it up (called once).
	// It fails only when ctx ends.
	Hold(ctx context.Context) (held context.Context, release func(), err error)
}

// Source polls one log group.
type Source struct {
	opts    Options
	api     client
	key     string
	log     *slog.Logger
	metrics *metrics.Metrics
	cursors Cursors
	lease   Lease
}

// New checks o and builds the CloudWatch Logs client; nothing is
// requested until Run.
func New(ctx context.Context, o Options, logger *slog.Logger) (*Source, error) {
	if o.LogGroup == "" {
		if o.Cluster == "" {
			return nil, errors.New("eks source: log_group or cluster is required")
		}
		o.LogGroup = LogGroup(o.Cluster)
	}
	where := "eks source " + o.LogGroup
	if o.StreamPrefix == "" {
		o.StreamPrefix = DefaultStreamPrefix
	}
	switch {
	case o.PollInterval < 0:
		return nil, fmt.Errorf("%s: poll_interval must be positive, got %s", where, o.PollInterval)
	case o.PollInterval == 0:
		o.PollInterval = DefaultPollInterval
	}
	switch {
	case o.Overlap < 0:
		o.Overlap = 0
	case o.Overlap == 0:
		o.Overlap = DefaultOverlap
	}
	switch o.StartAt {
	case "":
		o.StartAt = StartEnd
	case StartEnd, StartBeginning:
	default:
		return nil, fmt.Errorf("%s: start_at must be %q or %q, got %q", where, StartEnd, StartBeginning, o.StartAt)
	}
	switch {
	case o.Retry == (backoff.Policy{}):
		o.Retry = DefaultRetry
	case !o.Retry.Valid():
		return nil, fmt.Errorf("%s: retry backoff must have 0 < initial <= max, got %+v", where, o.Retry)
	}
	if o.Endpoint != "" && !strings.HasPrefix(o.Endpoint, "https://") && !strings.HasPrefix(o.Endpoint, "http://") {
		return nil, fmt.Errorf("%s: endpoint must be an http:// or https:// URL, got %q", where, o.Endpoint)
	}
	api, region, err := newClient(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	o.Region = region
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Source{
		opts:    o,
		api:     api,
		key:     stateKey(region, o.LogGroup, o.StreamPrefix),
		log:     logger.With("source", Kind, "region", region, "log_group", o.LogGroup),
		metrics: o.Metrics,
	}, nil
}

// stateKey names the cursor and the lease of a log group's streams: a
// key-value key, which allows neither the '#' of log group names nor an
// unbounded length.
func stateKey(region, group, prefix string) string {
	sum := sha256.Sum256([]byte(group + "\n" + prefix))
	return "eks." + region + "." + hex.EncodeToString(sum[:8])
}

// Key names this source's cursor and lease.
func (s *Source) Key() string { return s.key }

// With returns the source keeping its cursor in cursors and polling only
// while it holds lease; Run needs both.
func (s *Source) With(cursors Cursors, lease Lease) *Source {
	c := *s
	c.cursors, c.lease = cursors, lease
	return &c
}

// Run polls while this replica holds the lease, until ctx is done; it
// returns nil then. Every failure to read or to store is retried.
func (s *Source) Run(ctx context.Context, pub ingest.Publisher) error {
	if s.cursors == nil || s.lease == nil {
		return errors.New("eks source: no cursor store or lease (With)")
	}
	for s.pollWhileHeld(ctx, pub) {
		s.log.Warn("lease lost: another replica polls; waiting to take over")
	}
	return nil
}

// pollWhileHeld waits for the lease and polls until it is lost; false
// once ctx ended, which is the only way Hold fails.
func (s *Source) pollWhileHeld(ctx context.Context, pub ingest.Publisher) bool {
	held, release, err := s.lease.Hold(ctx)
	if err != nil {
		return false
	}
	defer release()
	s.log.Info("polling CloudWatch Logs", "stream_prefix", s.opts.StreamPrefix, "every", s.opts.PollInterval)
	s.poll(held, pub)
	return ctx.Err() == nil
}
