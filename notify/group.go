package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/backoff"
)

// grouper is the group stage: it holds the alerts of routes that group,
// one group per route and group key, until the group is due, then claims
// the group's notification in the bucket and hands the group on to be
// delivered. Held alerts stay unacknowledged, kept alive, so that a
// crash loses none of them.
type grouper struct {
	kv     jetstream.KeyValue
	dest   string
	settle *settler
	now    func() time.Time
	// keepEvery is how often held alerts are reported in progress: well
	// within the ack wait.
	keepEvery time.Duration
	// backoff spaces the claims of a group whose state is unavailable.
	backoff backoff.Policy
	logger  *slog.Logger

	groups   map[string]*group
	lastKeep time.Time
}

// group is the alerts of one group key held by this replica until the
// group's next notification.
type group struct {
	key     string // key of the shared state in the bucket
	g       grouping
	items   []item
	ids     map[string]int // alert ID -> index in items
	flushAt time.Time
}

// groupState is what replicas share about a group: when it began and when
// it was last notified. A replica may notify only after claiming the next
// notification with a compare-and-set on this record, so replicas
// together send at most one notification per group_interval.
type groupState struct {
	Created  time.Time `json:"created"`
	Notified time.Time `json:"notified,omitzero"`
}

// next is when the group may next be notified.
func (s groupState) next(g grouping) time.Time {
	if s.Notified.IsZero() {
		return s.Created.Add(g.wait)
	}
	return s.Notified.Add(g.interval)
}

// expired: a group quiet for repeat_interval starts over, waiting
// group_wait again for company rather than group_interval.
func (s groupState) expired(g grouping, now time.Time) bool {
	last := s.Notified
	if last.IsZero() {
		last = s.Created
	}
	return now.Sub(last) > g.repeat
}

// exec holds the alerts whose route groups and passes on the others.
func (s *grouper) exec(ctx context.Context, items []item) []item {
	out := items[:0]
	for _, it := range items {
		if !it.grouping.enabled() {
			out = append(out, it)
			continue
		}
		s.hold(ctx, it)
	}
	return out
}

// hold adds an alert to its group, starting the group if needed.
func (s *grouper) hold(ctx context.Context, it item) {
	g := it.grouping
	k := groupKVKey(s.dest, it.route, GroupKey(g.by, it.a))
	gr, ok := s.groups[k]
	if !ok {
		gr = &group{key: k, g: g, ids: map[string]int{}}
		st, _, err := s.loadOrStart(ctx, k, g)
		if err != nil {
			s.logger.Warn("group state unavailable; grouping locally", "err", err)
			gr.flushAt = s.now().Add(g.wait)
		} else {
			gr.flushAt = st.next(g)
		}
		s.groups[k] = gr
	}
	if i, dup := gr.ids[it.a.ID]; dup {
		// A redelivery of an alert already held: keep the newer message,
		// whose ack is the one that counts.
		gr.items[i] = it
		return
	}
	gr.ids[it.a.ID] = len(gr.items)
	gr.items = append(gr.items, it)
}

// loadOrStart reads a group's shared state, creating it when absent or
// expired.
func (s *grouper) loadOrStart(ctx context.Context, key string, g grouping) (groupState, uint64, error) {
	for range 3 {
		now := s.now()
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			st := groupState{Created: now}
			rev, err := s.kv.Create(ctx, key, mustJSON(st))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return st, rev, err
		case err != nil:
			return groupState{}, 0, err
		}
		var st groupState
		if err := json.Unmarshal(e.Value(), &st); err != nil || st.expired(g, now) {
			st = groupState{Created: now}
			rev, err := s.kv.Update(ctx, key, mustJSON(st), e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return st, rev, err
		}
		return st, e.Revision(), nil
	}
	return groupState{}, 0, errors.New("group state: too many concurrent updates")
}

// next is when the earliest held group is due; zero when none is held.
func (s *grouper) next() time.Time {
	var next time.Time
	for _, gr := range s.groups {
		if next.IsZero() || gr.flushAt.Before(next) {
			next = gr.flushAt
		}
	}
	return next
}

// flush hands every group whose time has come to deliver, which reports
// whether the group's notification was delivered.
func (s *grouper) flush(ctx context.Context, deliver func(context.Context, []item) bool) {
	for k, gr := range s.groups {
		if ctx.Err() != nil {
			return
		}
		if s.now().Before(gr.flushAt) {
			continue
		}
		prev, rev, claimed, err := s.claim(ctx, gr)
		if err != nil {
			s.logger.Warn("claiming group notification failed; retrying", "err", err)
			gr.flushAt = s.now().Add(s.backoff.Delay(1))
			continue
		}
		if !claimed {
			continue // another replica notified; flushAt now points past its interval
		}
		delete(s.groups, k)
		if deliver(ctx, gr.items) {
			continue
		}
		// Give the claim back so the retried alerts are not held back a
		// whole group_interval for a notification nobody received.
		if _, err := s.kv.Update(context.WithoutCancel(ctx), gr.key, mustJSON(prev), rev); err != nil {
			s.logger.Debug("releasing group claim failed", "err", err)
		}
	}
}

// claim marks the group notified now, if no replica has done so within
// its interval. It returns the previous state and the claim's revision.
func (s *grouper) claim(ctx context.Context, gr *group) (groupState, uint64, bool, error) {
	for range 3 {
		now := s.now()
		e, err := s.kv.Get(ctx, gr.key)
		var st groupState
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Expired from the bucket: this replica starts and claims it.
		case err != nil:
			return groupState{}, 0, false, err
		default:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &st) != nil {
				st = groupState{}
			}
		}
		if st.Created.IsZero() {
			st.Created = now
		}
		if !st.Notified.IsZero() && !st.expired(gr.g, now) && now.Before(st.next(gr.g)) {
			gr.flushAt = st.next(gr.g)
			return st, 0, false, nil
		}
		claimed := groupState{Created: st.Created, Notified: now}
		var newRev uint64
		if rev == 0 {
			newRev, err = s.kv.Create(ctx, gr.key, mustJSON(claimed))
		} else {
			newRev, err = s.kv.Update(ctx, gr.key, mustJSON(claimed), rev)
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return groupState{}, 0, false, err
		}
		return st, newRev, true, nil
	}
	return groupState{}, 0, false, errors.New("group state: too many concurrent updates")
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with groupState, which always encodes
	}
	return b
}

// keepAlive stops JetStream redelivering the alerts held.
func (s *grouper) keepAlive() {
	now := s.now()
	if now.Sub(s.lastKeep) < s.keepEvery {
		return
	}
	s.lastKeep = now
	for _, gr := range s.groups {
		for _, it := range gr.items {
			if err := it.msg.InProgress(); err != nil {
				s.logger.Debug("in-progress failed", "err", err)
			}
		}
	}
}

// release hands the held alerts back, on shutdown, so that another
// replica can deliver them without waiting for the ack wait.
func (s *grouper) release() {
	for k, gr := range s.groups {
		s.settle.nakAll(gr.items)
		delete(s.groups, k)
	}
}
