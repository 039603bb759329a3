package silence

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// watchBackoff paces watching the bucket again after a watch ended (the
// connection to NATS was lost for longer than the watch survives).
var watchBackoff = backoff.Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Jitter: true}

// Set is the silences a notifier honours, kept current by a watch of the
// bucket, so that a silence applies within moments of being added or
// expired. Every destination's pipeline reads it at once; it is replaced
// whole on each change, never changed in place.
type Set struct {
	kv     jetstream.KeyValue
	now    func() time.Time
	logger *slog.Logger

	cur   atomic.Pointer[[]*Matcher]
	ready chan struct{}
	once  sync.Once
}

// NewSet watches the store's silences once Run runs; now is the clock.
func (s *Store) NewSet(now func() time.Time, logger *slog.Logger) *Set {
	set := &Set{kv: s.kv, now: now, logger: logger, ready: make(chan struct{})}
	set.cur.Store(&[]*Matcher{})
	return set
}

// Ready is closed once the silences in the bucket when Run started have
// been read, so that none of them is missed by the first alerts.
func (set *Set) Ready() <-chan struct{} { return set.ready }

// Run watches the bucket until ctx is done, watching again when a watch
// ends.
func (set *Set) Run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if set.watch(ctx) {
			attempt = 0
		}
		if backoff.Wait(ctx, watchBackoff.Delay(attempt)) != nil {
			return
		}
	}
}

// watch follows one watch until it ends, and reports whether it got as
// far as the current values.
func (set *Set) watch(ctx context.Context) (synced bool) {
	w, err := set.kv.Watch(ctx, keySilence+"*")
	if err != nil {
		if ctx.Err() == nil {
			set.logger.Warn("watching silences failed; retrying", "err", err)
		}
		return false
	}
	// Stopping only unsubscribes; an error leaves nothing to undo.
	defer func() { _ = w.Stop() }()
	// A new watch sends every current value again: start from nothing,
	// and publish the set once they have all come.
	byID := map[string]*Matcher{}
	for {
		select {
		case <-ctx.Done():
			return synced
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() == nil {
					set.logger.Warn("the watch of silences ended; watching again")
				}
				return synced
			}
			if e == nil {
				synced = true
				set.publish(byID)
				set.once.Do(func() { close(set.ready) })
				continue
			}
			set.apply(byID, e)
			if synced {
				set.publish(byID)
			}
		}
	}
}

// apply records one change of a silence in byID.
func (set *Set) apply(byID map[string]*Matcher, e jetstream.KeyValueEntry) {
	id := e.Key()[len(keySilence):]
	if e.Operation() != jetstream.KeyValuePut {
		delete(byID, id)
		return
	}
	sil, err := decodeSilence(e.Value())
	if err == nil {
		var m *Matcher
		if m, err = NewMatcher(sil); err == nil {
			byID[id] = m
			return
		}
	}
	// Written by a vigil that knows more (a field this one lacks), or
	// by hand: not honoured, so alerts are sent rather than lost.
	delete(byID, id)
	set.logger.Warn("silence not honoured: it cannot be read or compiled", "silence", id, "err", err)
}

// publish makes the silences of byID that have not ended the set, oldest
// first; ended ones are dropped from byID too, so that it holds no more
// than the silences in force.
func (set *Set) publish(byID map[string]*Matcher) {
	now := set.now()
	ms := make([]*Matcher, 0, len(byID))
	for id, m := range byID {
		if !now.Before(m.End()) {
			delete(byID, id)
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *Matcher) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	set.cur.Store(&ms)
}

// Match returns the oldest silence that holds for a at now, nil if none
// does. Conditions that could not be evaluated are logged and do not hold.
func (set *Set) Match(a *alert.Alert, now time.Time) *Matcher {
	for _, m := range *set.cur.Load() {
		ok, err := m.Matches(a, now)
		if err != nil {
			set.logger.Warn("silence condition failed on an alert; not silenced by it", "alert", a.ID, "err", err)
			continue
		}
		if ok {
			return m
		}
	}
	return nil
}
