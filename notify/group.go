package notify

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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

func groupKVKey(dest string, route int, key string) string {
	return "group." + hashHex(dest, strconv.Itoa(route), key)
}

// hold adds an alert to its group, starting the group if needed.
func (w *worker) hold(ctx context.Context, route int, g grouping, it item) {
	k := groupKVKey(w.dst.Name, route, GroupKey(g.by, it.a))
	gr, ok := w.groups[k]
	if !ok {
		gr = &group{key: k, g: g, ids: map[string]int{}}
		st, _, err := w.loadOrStart(ctx, k, g)
		if err != nil {
			w.logger.Warn("group state unavailable; grouping locally", "err", err)
			gr.flushAt = w.d.opts.Now().Add(g.wait)
		} else {
			gr.flushAt = st.next(g)
		}
		w.groups[k] = gr
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
func (w *worker) loadOrStart(ctx context.Context, key string, g grouping) (groupState, uint64, error) {
	for range 3 {
		now := w.d.opts.Now()
		e, err := w.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			st := groupState{Created: now}
			rev, err := w.kv.Create(ctx, key, mustJSON(st))
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
			rev, err := w.kv.Update(ctx, key, mustJSON(st), e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return st, rev, err
		}
		return st, e.Revision(), nil
	}
	return groupState{}, 0, errors.New("group state: too many concurrent updates")
}

// flushDue notifies every group whose time has come.
func (w *worker) flushDue(ctx context.Context) {
	for k, gr := range w.groups {
		if ctx.Err() != nil {
			return
		}
		if w.d.opts.Now().Before(gr.flushAt) {
			continue
		}
		prev, rev, claimed, err := w.claim(ctx, gr)
		if err != nil {
			w.logger.Warn("claiming group notification failed; retrying", "err", err)
			gr.flushAt = w.d.opts.Now().Add(w.d.opts.Backoff.Delay(1))
			continue
		}
		if !claimed {
			continue // another replica notified; flushAt now points past its interval
		}
		delete(w.groups, k)
		items := gr.items
		if w.deliver(ctx, items) {
			continue
		}
		// Give the claim back so the retried alerts are not held back a
		// whole group_interval for a notification nobody received.
		if _, err := w.kv.Update(context.WithoutCancel(ctx), gr.key, mustJSON(prev), rev); err != nil {
			w.logger.Debug("releasing group claim failed", "err", err)
		}
	}
}

// claim marks the group notified now, if no replica has done so within
// its interval. It returns the previous state and the claim's revision.
func (w *worker) claim(ctx context.Context, gr *group) (groupState, uint64, bool, error) {
	for range 3 {
		now := w.d.opts.Now()
		e, err := w.kv.Get(ctx, gr.key)
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
			newRev, err = w.kv.Create(ctx, gr.key, mustJSON(claimed))
		} else {
			newRev, err = w.kv.Update(ctx, gr.key, mustJSON(claimed), rev)
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
