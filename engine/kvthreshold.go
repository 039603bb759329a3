package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/metrics"
)

// kvPollInterval is how often a KV threshold store reads its bucket's
// status for vigil_threshold_groups.
const kvPollInterval = 15 * time.Second

// DefaultMaxThresholdGroups bounds the threshold groups kept, in the KV
// bucket (bus.StreamOptions.MaxThresholdGroups) as in a memory store: a
// window holds at most a rule's count entries, so this bounds memory too.
const DefaultMaxThresholdGroups = 100_000

// KVThresholds keeps threshold windows in a JetStream key-value bucket, so
// that every worker process sees and updates the same window: a rule gives
// the same alerts with one worker or five, and after a worker dies.
//
// The number of groups is bounded by the bucket itself (bus.EnsureStreams
// with bus.StreamOptions.MaxThresholdGroups): its stream keeps at most that many
// messages and discards the oldest. A group is one message (history 1) and
// each update replaces it, so the server forgets the least recently updated
// group. A window evaluated meanwhile by a worker fails its compare-and-set
// (the key has no revision any more), is read again as absent and starts
// over: a flood of distinct groups costs partial counts, never an error.
//
// Evictions happen inside the server, which does not report them. The store
// counts them as the groups it creates while the bucket is full: it keeps
// an estimate of the bucket's size — the count read at the last poll plus
// the groups this process created since — and a group created at or over
// the limit evicts one. The sum over worker processes is exact while the
// bucket stays full (a flood), and off by at most the groups created by
// other processes, or expired by the bucket's TTL, within one poll
// interval while it fills or drains.
type KVThresholds struct {
	kv          jetstream.KeyValue
	evicted     prometheus.Counter
	groupsGauge prometheus.Gauge

	mu     sync.Mutex
	groups uint64 // estimated groups in the bucket
	limit  uint64 // the bucket's bound; 0: none known
}

// KVOptions configure a KV threshold store.
type KVOptions struct {
	// GroupLimit is the bound assumed until the first poll reads the
	// bucket's own (DefaultMaxThresholdGroups; negative: none).
	GroupLimit int
	// Metrics receive the groups in the bucket at every poll
	// (vigil_threshold_groups) and each group this store created while the
	// bucket was full, that is each group the server evicted to make room
	// (vigil_threshold_groups_evicted_total). Nil: metrics of its own,
	// registered nowhere.
	Metrics *metrics.Metrics
	// Evicted and Groups replace the threshold metrics, for a store on
	// another bucket (the rule state).
	Evicted prometheus.Counter
	Groups  prometheus.Gauge
}

// NewKVThresholds is a ThresholdStore on a JetStream KV bucket.
func NewKVThresholds(kv jetstream.KeyValue, o KVOptions) *KVThresholds {
	if o.GroupLimit == 0 {
		o.GroupLimit = DefaultMaxThresholdGroups
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if o.Evicted == nil {
		o.Evicted = o.Metrics.ThresholdEvicted
	}
	if o.Groups == nil {
		o.Groups = o.Metrics.ThresholdGroups
	}
	return &KVThresholds{kv: kv, evicted: o.Evicted, groupsGauge: o.Groups, limit: uint64(max(o.GroupLimit, 0))}
}

// kvKey maps a threshold key (rule id and group values, any characters) to
// a valid KV key.
func kvKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "t." + hex.EncodeToString(sum[:20])
}

// Get returns the value and revision of key; an absent, deleted or evicted
// key gives a nil value and revision 0.
func (s *KVThresholds) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("threshold state: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// Update stores value if key is still at revision. A key evicted since it
// was read has no revision any more: the server refuses the update (wrong
// last sequence), which is ErrConflict, and the caller reads it again as
// absent and creates it.
func (s *KVThresholds) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	var (
		rev uint64
		err error
	)
	if revision == 0 {
		rev, err = s.kv.Create(ctx, kvKey(key), value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrConflict
		}
		if err == nil {
			s.created()
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

// created accounts for a new group: past the bound the server evicted one.
func (s *KVThresholds) created() {
	s.mu.Lock()
	full := s.limit > 0 && s.groups >= s.limit
	if !full {
		s.groups++
	}
	s.mu.Unlock()
	if full {
		s.evicted.Inc()
	}
}

// Poll reads the number of groups and the bound from the bucket's stream,
// reports the number and resets the estimate to it.
func (s *KVThresholds) Poll(ctx context.Context) error {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("threshold bucket status: %w", err)
	}
	n := st.Values()
	s.mu.Lock()
	s.groups = n
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		if c := bs.StreamInfo().Config; c.MaxMsgs > 0 && c.Discard == jetstream.DiscardOld {
			s.limit = uint64(c.MaxMsgs)
		} else {
			s.limit = 0
		}
	}
	s.mu.Unlock()
	s.groupsGauge.Set(float64(n))
	return nil
}

// Run polls the bucket until ctx is done, first at once. A failed poll
// (NATS unreachable) keeps the last figures; the next one retries.
func (s *KVThresholds) Run(ctx context.Context) error {
	t := time.NewTicker(kvPollInterval)
	defer t.Stop()
	for {
		_ = s.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
