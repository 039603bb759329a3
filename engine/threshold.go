package engine

import (
	"container/list"
	"context"
	"errors"
	"sync"

	"github.com/vigil-k8s/vigil/internal/metrics"
)

// ErrConflict is returned by ThresholdStore.Update when the key changed since
// it was read. The caller reads again and retries.
var ErrConflict = errors.New("threshold state changed concurrently")

// ThresholdStore holds threshold window state shared by every worker. It is
// shaped after a JetStream KV bucket so that workers in several processes
// can share it: updates are read, modify, compare-and-set on one key.
type ThresholdStore interface {
	// Get returns the value of key and its revision; an absent key gives a
	// nil value and revision 0.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Update stores value if key is still at revision (0: the key must not
	// exist) and returns the new revision, or ErrConflict.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// NewMemoryThresholds is a ThresholdStore for one process (replay, tests, a
// single worker). It keeps the DefaultMaxThresholdGroups most recently
// updated keys.
func NewMemoryThresholds() ThresholdStore {
	return NewMemoryThresholdsSize(DefaultMaxThresholdGroups, nil)
}

// NewMemoryThresholdsSize is NewMemoryThresholds keeping at most maxKeys
// keys; the least recently updated are forgotten first, each counted in
// m's vigil_threshold_groups_evicted_total (nil m: metrics registered
// nowhere): a flood of distinct groups costs partial counts, and that must
// show.
func NewMemoryThresholdsSize(maxKeys int, m *metrics.Metrics) ThresholdStore {
	if m == nil {
		m = metrics.New(nil)
	}
	return &memoryThresholds{max: max(maxKeys, 1), keys: map[string]*list.Element{}, order: list.New(), m: m}
}

type memEntry struct {
	key   string
	value []byte
	rev   uint64
}

type memoryThresholds struct {
	mu    sync.Mutex
	max   int
	keys  map[string]*list.Element
	order *list.List // front: most recently updated
	rev   uint64
	m     *metrics.Metrics
}

func (m *memoryThresholds) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.keys[key]
	if !ok {
		return nil, 0, nil
	}
	e := el.Value.(*memEntry)
	return e.value, e.rev, nil
}

func (m *memoryThresholds) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.keys[key]
	var cur uint64
	if ok {
		cur = el.Value.(*memEntry).rev
	}
	if cur != revision {
		return 0, ErrConflict
	}
	m.rev++
	if ok {
		e := el.Value.(*memEntry)
		e.value, e.rev = value, m.rev
		m.order.MoveToFront(el)
		return m.rev, nil
	}
	m.keys[key] = m.order.PushFront(&memEntry{key: key, value: value, rev: m.rev})
	for len(m.keys) > m.max {
		last := m.order.Back()
		m.order.Remove(last)
		delete(m.keys, last.Value.(*memEntry).key)
		m.m.ThresholdEvicted.Inc()
	}
	return m.rev, nil
}
