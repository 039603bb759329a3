package engine

import (
	"sync"

	"github.com/vigil-k8s/vigil/rules"
)

// DefaultTermsCacheEntities bounds the entities of first-seen rules a
// worker remembers, to decide the sightings of values it knows without a
// round trip to the store.
const DefaultTermsCacheEntities = 10_000

// termsCache holds copies of first-seen state as last read or written.
// A copy may be stale: it is only used to tell that a sighting changes
// nothing (rules.TermsState.Known), which stays true as the stored state
// moves on. It is bounded by starting over when full, which costs reads,
// never alerts.
type termsCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]rules.TermsState
}

func newTermsCache(maxEntities int) *termsCache {
	return &termsCache{max: max(maxEntities, 1), entries: map[string]rules.TermsState{}}
}

func (c *termsCache) get(key string) (rules.TermsState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.entries[key]
	return st, ok
}

// put keeps st, which the caller no longer changes.
func (c *termsCache) put(key string, st rules.TermsState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[key] = st
}
