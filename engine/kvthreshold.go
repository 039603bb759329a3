package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// kvThresholds keeps threshold windows in a JetStream key-value bucket, so
// that every worker process sees and updates the same window: a rule gives
// the same alerts with one worker or five, and after a worker dies.
type kvThresholds struct {
	kv jetstream.KeyValue
}

// NewKVThresholds is a ThresholdStore on a JetStream KV bucket.
func NewKVThresholds(kv jetstream.KeyValue) ThresholdStore {
	return &kvThresholds{kv: kv}
}

// kvKey maps a threshold key (rule id and group values, any characters) to
// a valid KV key.
func kvKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "t." + hex.EncodeToString(sum[:20])
}

func (s *kvThresholds) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("threshold state: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

func (s *kvThresholds) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	var (
		rev uint64
		err error
	)
	if revision == 0 {
		rev, err = s.kv.Create(ctx, kvKey(key), value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrConflict
		}
	} else {
		rev, err = s.kv.Update(ctx, kvKey(key), value, revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, ErrConflict
		}
	}
	if err != nil {
		return 0, fmt.Errorf("threshold state: %w", err)
	}
	return rev, nil
}
