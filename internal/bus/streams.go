package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/config"
)

// Retention of the streams that are not sized by configuration.
const (
	alertsMaxAge     = 30 * 24 * time.Hour
	deadMaxAge       = 30 * 24 * time.Hour
	thresholdsTTL    = 24 * time.Hour
	notifyStateTTL   = 7 * 24 * time.Hour
	provisionRetries = 10
)

// StreamConfigs are the streams vigil needs, sized from cfg.
func StreamConfigs(cfg config.NATS) []jetstream.StreamConfig {
	replicas := max(cfg.Replicas, 1)
	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	dup := cfg.DuplicateWindow
	if dup == 0 {
		dup = config.DefaultDuplicateWindow
	}
	maxAge := cfg.MaxAge
	if maxAge == 0 {
		maxAge = config.DefaultStreamMaxAge
	}
	return []jetstream.StreamConfig{
		{
			Name:        StreamAudit,
			Description: "Kubernetes audit events, one message per event and stage",
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
func KVConfigs(cfg config.NATS) []jetstream.KeyValueConfig {
	replicas := max(cfg.Replicas, 1)
	return []jetstream.KeyValueConfig{
		{Bucket: BucketThresholds, Description: "threshold rule windows", TTL: thresholdsTTL, Replicas: replicas, Storage: jetstream.FileStorage},
		{Bucket: BucketNotify, Description: "notification groups and delivered alert ids", TTL: notifyStateTTL, Replicas: replicas, Storage: jetstream.FileStorage},
	}
}

// ProvisionOption changes what EnsureStreams provisions.
type ProvisionOption func(*provisionOptions)

type provisionOptions struct {
	maxThresholdGroups int
}

// WithMaxThresholdGroups bounds the threshold bucket to n groups
// (engine.max_threshold_groups): its stream keeps at most n messages and
// discards the oldest, and as each group has one message (history 1) and
// every update of a group replaces its message, the server forgets the
// least recently updated group to make room for a new one. Without this
// option an existing bucket's bound is left as it is: only processes that
// evaluate rules decide it.
func WithMaxThresholdGroups(n int) ProvisionOption {
	return func(o *provisionOptions) { o.maxThresholdGroups = n }
}

// EnsureStreams creates every stream and bucket, or updates a stream whose
// configuration changed. It is safe to call from several processes at
// once: each finds what another created, and a lost creation race is
// retried.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg config.NATS, opts ...ProvisionOption) error {
	var o provisionOptions
	for _, opt := range opts {
		opt(&o)
	}
	for _, sc := range StreamConfigs(cfg) {
		if err := retry(ctx, func() error { return ensureStream(ctx, js, sc) }); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range KVConfigs(cfg) {
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
		if kc.Bucket == BucketThresholds && o.maxThresholdGroups > 0 {
			if err := retry(ctx, func() error { return ensureBucketLimit(ctx, js, kc.Bucket, o.maxThresholdGroups) }); err != nil {
				return fmt.Errorf("key-value bucket %s: limit to %d keys: %w", kc.Bucket, o.maxThresholdGroups, err)
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
// leaders, fail transiently.
func retry(ctx context.Context, f func() error) error {
	var err error
	wait := 50 * time.Millisecond
	for range provisionRetries {
		if err = f(); err == nil {
			return nil
		}
		// A JetStream API request that timed out (a cluster busy electing
		// or serialising concurrent creations) is retried; only the
		// caller's own context ends the attempts.
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
	return err
}
