package bus

import (
	"context"
	"errors"
	"fmt"
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

// EnsureStreams creates or updates every stream and bucket. It is safe to
// call from several processes at once: a lost creation race is retried as
// an update.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg config.NATS) error {
	for _, sc := range StreamConfigs(cfg) {
		err := retry(ctx, func() error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range KVConfigs(cfg) {
		err := retry(ctx, func() error {
			_, err := js.CreateOrUpdateKeyValue(ctx, kc)
			return err
		})
		if err != nil {
			return fmt.Errorf("key-value bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
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
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
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
