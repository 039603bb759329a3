package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// WindowState is the threshold state of one rule and group. It is plain data
// so that a store can keep it anywhere (memory, a JetStream KV bucket) and
// update it by read-modify-compare-and-set.
type WindowState struct {
	// Entries maps what is counted (an auditID, or a distinct value) to the
	// earliest event time it was seen at. Keying requests by auditID counts
	// a request once however many stages of it arrive.
	Entries map[string]time.Time `json:"entries,omitempty"`
	// QuietUntil ends the quiet period after an alert.
	QuietUntil time.Time `json:"quietUntil,omitzero"`
	// Fired remembers the last alert, so that a redelivered or later stage
	// of the firing request gives the same alert again rather than nothing:
	// the alert's identity makes the repeat harmless downstream.
	Fired *Firing `json:"fired,omitempty"`
	// Members are the events of at most alert.MaxMembers entries, by the
	// entry they were counted under: those latest in the window. The
	// window drops its earliest entries first, so the latest entries of
	// what remains are always among these, whatever order the events
	// arrived in, and a few members keep the state small whatever the
	// count.
	Members map[string]alert.Member `json:"members,omitempty"`
}

// Firing is a threshold alert: the request that completed the count, the
// count, the start of the window it fell in, and its latest members in
// time order.
type Firing struct {
	AuditID string         `json:"auditID"`
	Count   int            `json:"count"`
	Start   time.Time      `json:"start"`
	Members []alert.Member `json:"members,omitempty"`
}

// Observe counts one matching event into the state. It reports the firing,
// if this event brings the count in the trailing window to the threshold
// (or is the request that did), and whether the state changed and must be
// stored.
//
// The window slides on event time, not arrival: entries older than the
// newest entry minus the window drop out. After firing, the group stays
// quiet until the window that fired has passed, and events from before that
// point are ignored, so a burst fires once whatever order it arrives in.
//
// m is the event's member, m.AuditID its request.
func (st *WindowState) Observe(t *Threshold, m alert.Member, distinct string, at time.Time) (fired *Firing, changed bool) {
	auditID := m.AuditID
	if st.Fired != nil && st.Fired.AuditID == auditID {
		return st.Fired, false
	}
	if at.Before(st.QuietUntil) {
		return nil, false
	}
	key := auditID
	if t.Distinct != "" {
		key = distinct
	}
	if prev, seen := st.Entries[key]; seen && !at.Before(prev) {
		return nil, false
	}
	if st.Entries == nil {
		st.Entries = map[string]time.Time{}
	}
	st.Entries[key] = at
	if st.Members == nil {
		st.Members = map[string]alert.Member{}
	}
	st.Members[key] = m
	latest := at
	for _, ts := range st.Entries {
		if ts.After(latest) {
			latest = ts
		}
	}
	start := latest
	for k, ts := range st.Entries {
		if !ts.After(latest.Add(-t.Window)) {
			delete(st.Entries, k)
			continue
		}
		if ts.Before(start) {
			start = ts
		}
	}
	st.keepLatestMembers()
	if len(st.Entries) < t.Count {
		return nil, true
	}
	st.Fired = &Firing{AuditID: auditID, Count: len(st.Entries), Start: start, Members: st.members()}
	st.QuietUntil = start.Add(t.Window)
	st.Entries, st.Members = nil, nil
	return st.Fired, true
}

// before orders entries by the time they count at, then by key, so that
// ties are broken the same way by every worker.
func (st *WindowState) before(a, b string) bool {
	ta, tb := st.Entries[a], st.Entries[b]
	return ta.Before(tb) || ta.Equal(tb) && a < b
}

// keepLatestMembers drops the members of entries that left the window,
// then the earliest until at most alert.MaxMembers remain.
func (st *WindowState) keepLatestMembers() {
	for k := range st.Members {
		if _, in := st.Entries[k]; !in {
			delete(st.Members, k)
		}
	}
	for len(st.Members) > alert.MaxMembers {
		first := ""
		for k := range st.Members {
			if first == "" || st.before(k, first) {
				first = k
			}
		}
		delete(st.Members, first)
	}
}

// members are the kept members in the order of their entries.
func (st *WindowState) members() []alert.Member {
	keys := slices.Collect(maps.Keys(st.Members))
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case st.before(a, b):
			return -1
		case st.before(b, a):
			return 1
		}
		return 0
	})
	out := make([]alert.Member, len(keys))
	for i, k := range keys {
		out[i] = st.Members[k]
	}
	return out
}

// ThresholdKey names the state of one rule and group. It only uses
// characters valid in a JetStream KV key.
func ThresholdKey(ruleID string, group []string) string {
	return ruleID + "." + GroupHash(group)
}

// GroupHash is a short, stable digest of a group key.
func GroupHash(group []string) string {
	h := sha256.Sum256([]byte(strings.Join(group, "\x00")))
	return hex.EncodeToString(h[:8])
}

// ThresholdAlertID identifies a threshold alert by rule, group and window.
// The window start is truncated to the window length, so the id does not
// depend on which event of a burst was seen first.
func ThresholdAlertID(ruleID string, group []string, t *Threshold, f *Firing) string {
	return ruleID + "/" + GroupHash(group) + "/" + f.Start.Truncate(t.Window).UTC().Format(time.RFC3339)
}
