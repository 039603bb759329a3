package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/backoff"
)

// Retention of the streams that are not sized by StreamOptions.
const (
	alertsMaxAge     = 30 * 24 * time.Hour
	deadMaxAge       = 30 * 24 * time.Hour
	thresholdsTTL    = 24 * time.Hour
	notifyStateTTL   = 7 * 24 * time.Hour
	provisionRetries = 10
)

// silencesTTL keeps a silence, and the record of each alert it silenced,
// for its longest duration (30 days, silence.MaxDuration) and a week
// (silence.Retention) after it was last written, so that an ended silence
// stays listed for at least that week.
const silencesTTL = 37 * 24 * time.Hour

// sourcesTTL forgets a source that has stored nothing for this long: one
// removed from the configuration, or a file source's node gone. A source
// silent for longer is alerted again, once per TTL.
const sourcesTTL = 30 * 24 * time.Hour

// Defaults of StreamOptions.
const (
	// DefaultDuplicateWindow is how long JetStream remembers a MsgID: it
	// must outlast any redelivery of the same event.
	DefaultDuplicateWindow = 2 * time.Hour
	// DefaultStreamMaxAge is how long AUDIT keeps events.
	DefaultStreamMaxAge = 7 * 24 * time.Hour
)

// provisionBackoff paces the retries of one provisioning step: concurrent
// creation by several processes and a cluster electing leaders fail for
// moments, not minutes.
var provisionBackoff = backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second}

// StreamOptions size the streams and buckets. Zero fields take the
// defaults.
type StreamOptions struct {
	// Replicas of every stream and bucket: 1 for one server, 3 on a cluster.
	Replicas int
	// MaxAge and MaxBytes bound the AUDIT stream; MaxBytes 0 is unbounded.
	MaxAge   time.Duration
	MaxBytes int64
	// DuplicateWindow is JetStream's MsgID de-duplication window.
	DuplicateWindow time.Duration
	// MaxThresholdGroups, when positive, bounds the threshold bucket (and
	// the first-seen rules' entities in the rule state bucket) to
	// that many groups: its stream keeps at most that many messages and
	// discards the oldest, and as each group has one message (history 1)
	// and every update of a group replaces its message, the server forgets
	// the least recently updated group to make room for a new one. Zero
	// leaves an existing bucket's bound as it is: only processes that
	// evaluate rules decide it.
	MaxThresholdGroups int
}

func (o StreamOptions) withDefaults() StreamOptions {
	o.Replicas = max(o.Replicas, 1)
	if o.MaxBytes == 0 {
		o.MaxBytes = -1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultStreamMaxAge
	}
	return o
}

// StreamConfigs are the streams vigil needs, sized from o.
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	o = o.withDefaults()
	replicas, maxAge, maxBytes, dup := o.Replicas, o.MaxAge, o.MaxBytes, o.DuplicateWindow
	return []jetstream.StreamConfig{
		{
			Name:        StreamAudit,
			Description: "Kubernetes audit events: segments of events, or one event per message",
			Subjects:    []string{SubjectAuditPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			MaxAge:      maxAge,
			MaxBytes:    maxBytes,
			Duplicates:  dup,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamAlerts,
			Description: "Alerts raised by the engine, MsgID = alert id",
			Subjects:    []string{SubjectAlertsPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			MaxAge:      alertsMaxAge,
			Duplicates:  dup,
		},
		{
			Name:        StreamDead,
			Description: "Input and alerts that could not be processed, with the reason",
			Subjects:    []string{SubjectDeadPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			MaxAge:      deadMaxAge,
		},
	}
}

// KVConfigs are the key-value buckets vigil needs.
func KVConfigs(o StreamOptions) []jetstream.KeyValueConfig {
	replicas := o.withDefaults().Replicas
	return []jetstream.KeyValueConfig{
		{Bucket: BucketThresholds, Description: "threshold rule windows", TTL: thresholdsTTL, Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketRuleState, Description: "what first-seen rules learned, per entity", Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketNotify, Description: "notification groups and delivered alert ids", TTL: notifyStateTTL, Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketSilences, Description: "silences and the alerts they silenced", TTL: silencesTTL, Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketCursors, Description: "where each polling ingest source has read to", Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketLeases, Description: "which ingest replica polls each source", TTL: LeaseTTL, Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketSources, Description: "when each ingest source last stored an event", TTL: sourcesTTL, Replicas: replicas, Storage: jetstream.FileStorage},
	}
}

// EnsureStreams creates every stream and bucket, or updates a stream whose
// configuration changed. It is safe to call from several processes at
// once: each finds what another created, and a lost creation race is
// retried.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, sc := range StreamConfigs(o) {
		if err := retry(ctx, func() error { return ensureStream(ctx, js, sc) }); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range KVConfigs(o) {
		err := retry(ctx, func() error {
			if _, err := js.KeyValue(ctx, kc.Bucket); err == nil {
				return nil
			} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
				return err
			}
			_, err := js.CreateKeyValue(ctx, kc)
			if errors.Is(err, jetstream.ErrBucketExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("key-value bucket %s: %w", kc.Bucket, err)
		}
		if (kc.Bucket == BucketThresholds || kc.Bucket == BucketRuleState) && o.MaxThresholdGroups > 0 {
			if err := retry(ctx, func() error { return ensureBucketLimit(ctx, js, kc.Bucket, o.MaxThresholdGroups) }); err != nil {
				return fmt.Errorf("key-value bucket %s: limit to %d keys: %w", kc.Bucket, o.MaxThresholdGroups, err)
			}
		}
	}
	return nil
}

// ensureBucketLimit makes the stream behind a bucket keep at most n
// messages, discarding the oldest. nats.go's KeyValueConfig cannot say so
// (it creates buckets with MaxMsgs -1 and DiscardNew), but the server
// accepts both on a KV stream and on update: with DiscardNew a full bucket
// would refuse new groups, which is the wrong failure for a detector.
func ensureBucketLimit(ctx context.Context, js jetstream.JetStream, bucket string, n int) error {
	st, err := js.Stream(ctx, KVStream(bucket))
	if err != nil {
		return err
	}
	sc := st.CachedInfo().Config
	if sc.MaxMsgs == int64(n) && sc.Discard == jetstream.DiscardOld {
		return nil
	}
	sc.MaxMsgs = int64(n)
	sc.Discard = jetstream.DiscardOld
	_, err = js.UpdateStream(ctx, sc)
	return err
}

func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, sc)
		return err
	}
	if err != nil {
		return err
	}
	if sameStream(st.CachedInfo().Config, sc) {
		return nil
	}
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// sameStream compares what vigil configures of a stream.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Replicas == want.Replicas &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes &&
		have.Duplicates == want.Duplicates && have.Storage == want.Storage &&
		have.Discard == want.Discard && have.Description == want.Description
}

// EnsureConsumer creates or updates a durable consumer, retrying lost
// creation races like EnsureStreams.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var c jetstream.Consumer
	err := retry(ctx, func() error {
		var err error
		c, err = js.CreateOrUpdateConsumer(ctx, stream, cc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return c, nil
}

// retry runs f until it succeeds, a bounded number of times. Concurrent
// creation of one stream by several processes, and a cluster still electing
// leaders, fail transiently. A JetStream API request that timed out (a
// cluster busy electing or serialising concurrent creations) is retried;
// only the caller's own context ends the attempts early.
func retry(ctx context.Context, f func() error) error {
	return backoff.Retry(ctx, provisionBackoff, func(context.Context) error { return f() }, backoff.Attempts(provisionRetries))
}
