package eks

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// Bounds of what the cursor and the seen set hold. A cursor is one
// key-value message, well under NATS's 1 MiB; past these bounds the
// overlap is still harmless, only re-published for JetStream to drop.
const (
	maxCursorIDs  = 1000
	maxDeadIDs    = 100
	maxSeenEvents = 200_000
)

// cursor is what is saved after each stored page: the timestamp (ms) of
// the newest event stored, the ids of the events stored at exactly that
// millisecond (the next poll starts at it, inclusive), and the ids of
// recent events that were dead-lettered, which the overlap would
// otherwise dead-letter again after a restart.
type cursor struct {
	LogGroup     string           `json:"logGroup"`
	StreamPrefix string           `json:"streamPrefix"`
	Timestamp    int64            `json:"timestamp"`
	EventIDs     []string         `json:"eventIds,omitempty"`
	DeadLettered map[string]int64 `json:"deadLettered,omitempty"`
}

func decodeCursor(data []byte) (cursor, error) {
	var c cursor
	if err := json.Unmarshal(data, &c); err != nil {
		return cursor{}, fmt.Errorf("cursor is not valid: %w", err)
	}
	return c, nil
}

// seen is the events read, by CloudWatch event id, within the overlap
// window: a re-read finds them here and stores nothing again.
type seen struct {
	newest int64            // timestamp of the newest event read, ms
	ids    map[string]int64 // event id -> timestamp
	dead   map[string]int64 // of those, the dead-lettered
}

// restore starts from a saved cursor: after a restart only the events at
// its millisecond and the dead-lettered are known; the rest of the overlap
// is published again and dropped by JetStream.
func restore(c cursor) *seen {
	s := &seen{newest: c.Timestamp, ids: map[string]int64{}, dead: map[string]int64{}}
	for _, id := range c.EventIDs {
		s.ids[id] = c.Timestamp
	}
	for id, ts := range c.DeadLettered {
		s.ids[id], s.dead[id] = ts, ts
	}
	return s
}

func (s *seen) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// add records an event read and stored (or dead-lettered).
func (s *seen) add(id string, ts int64, dead bool) {
	s.newest = max(s.newest, ts)
	if len(s.ids) < maxSeenEvents || ts >= s.newest {
		s.ids[id] = ts
	}
	if dead && len(s.dead) < maxDeadIDs {
		s.dead[id] = ts
	}
}

// forget drops what is older than the window before the newest event.
func (s *seen) forget(window int64) {
	limit := s.newest - window
	maps.DeleteFunc(s.ids, func(_ string, ts int64) bool { return ts < limit })
	maps.DeleteFunc(s.dead, func(_ string, ts int64) bool { return ts < limit })
}

// cursor is what to save now.
func (s *seen) cursor(group, prefix string) cursor {
	c := cursor{LogGroup: group, StreamPrefix: prefix, Timestamp: s.newest}
	for id, ts := range s.ids {
		if ts == s.newest {
			c.EventIDs = append(c.EventIDs, id)
		}
	}
	slices.Sort(c.EventIDs)
	c.EventIDs = c.EventIDs[:min(len(c.EventIDs), maxCursorIDs)]
	if len(s.dead) > 0 {
		c.DeadLettered = maps.Clone(s.dead)
	}
	return c
}
