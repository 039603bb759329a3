package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// MaxSuppressHeld bounds the requests a suppression window remembers, to
// count each once however many of its stages or redeliveries arrive.
// Past it the window still holds matches back and counts them, but a
// request seen again may be counted twice.
const MaxSuppressHeld = 1000

// SuppressState is the suppression window of one rule and group, plain
// data like WindowState so that a store shared by every worker can keep it.
type SuppressState struct {
	// AuditID is the request that alerted and opened the window at Start;
	// the window ends at Until.
	AuditID string    `json:"auditID,omitempty"`
	Start   time.Time `json:"start,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	// Carried is what the previous window held back, told on the alert
	// that opened this one.
	Carried int `json:"carried,omitempty"`
	// Held are digests of the requests held back in this window, Count
	// how many were.
	Held  map[string]bool `json:"held,omitempty"`
	Count int             `json:"count,omitempty"`
	// Members are the earliest alert.MaxMembers of the matches held back
	// in this window, in time order; CarriedMembers those of the window
	// before, told with Carried.
	Members        []alert.Member `json:"members,omitempty"`
	CarriedMembers []alert.Member `json:"carriedMembers,omitempty"`
	// Prev is the window before, by the request that opened it and its
	// firing: a redelivery of that request gives its alert again, and a
	// request of that window seen again is not counted a second time.
	PrevAuditID string          `json:"prevAuditID,omitempty"`
	Prev        *SuppressFiring `json:"prev,omitempty"`
}

// SuppressFiring is a match that alerts: the start of the window it
// opened, and what the window before held back: how many, and the
// earliest of them.
type SuppressFiring struct {
	Start   time.Time      `json:"start"`
	Carried int            `json:"carried,omitempty"`
	Members []alert.Member `json:"members,omitempty"`
}

// Observe decides what a match of the group does. The first match alerts
// and opens a window of s.For on event time; later matches of other
// requests inside it are held back and counted. The first match after the
// window alerts again and carries the count of the window before. The
// request that opened the window alerts again (the same alert, harmless
// downstream) whenever it is seen: a redelivery or a later stage. It
// returns the firing, nil when the match is held back, and whether the
// state changed and must be stored: a match held back without a change was
// held back before (a later stage, a redelivery) and is not counted again. m is the match's member, m.AuditID
// its request.
//
// The members a window keeps are its earliest held back, by time and then
// auditID: a window never drops what it held, so the earliest are exact
// and the same whatever order the held matches arrived in.
func (st *SuppressState) Observe(s *Suppress, m alert.Member, at time.Time) (fired *SuppressFiring, changed bool) {
	auditID := m.AuditID
	if st.AuditID == auditID && st.AuditID != "" {
		return &SuppressFiring{Start: st.Start, Carried: st.Carried, Members: st.CarriedMembers}, false
	}
	if st.Prev != nil && st.PrevAuditID == auditID {
		return st.Prev, false
	}
	if st.AuditID != "" && at.Before(st.Until) {
		if st.Prev != nil && at.Before(st.Prev.Start.Add(s.For)) {
			// Of the window before, whose count is told already: a
			// redelivery or a later stage of what it held. (A request
			// from after it and before this window's opener, seen late,
			// is this window's.)
			return nil, false
		}
		d := heldDigest(auditID)
		if st.Held[d] {
			return nil, false
		}
		if len(st.Held) < MaxSuppressHeld {
			if st.Held == nil {
				st.Held = map[string]bool{}
			}
			st.Held[d] = true
		}
		st.Count++
		st.hold(m)
		return nil, true
	}
	next := SuppressState{AuditID: auditID, Start: at, Until: at.Add(s.For), Carried: st.Count, CarriedMembers: st.Members}
	if st.AuditID != "" {
		next.PrevAuditID = st.AuditID
		next.Prev = &SuppressFiring{Start: st.Start, Carried: st.Carried, Members: st.CarriedMembers}
	}
	*st = next
	return &SuppressFiring{Start: at, Carried: st.Carried, Members: st.CarriedMembers}, true
}

// hold adds m to the window's members, keeping the earliest
// alert.MaxMembers. A request already among them (seen again past
// MaxSuppressHeld) is not added twice.
func (st *SuppressState) hold(m alert.Member) {
	if slices.ContainsFunc(st.Members, func(x alert.Member) bool { return x.AuditID == m.AuditID }) {
		return
	}
	i, _ := slices.BinarySearchFunc(st.Members, m, alert.CompareMembers)
	if i >= alert.MaxMembers {
		return
	}
	st.Members = slices.Insert(st.Members, i, m)
	if len(st.Members) > alert.MaxMembers {
		st.Members = st.Members[:alert.MaxMembers]
	}
}

// SuppressAlertID identifies the alert that opened a suppression window
// by rule, group and window, the window's start truncated to its length:
// workers that see a burst in different orders let different requests
// open the window, and must still agree on its one alert.
func SuppressAlertID(ruleID string, group []string, s *Suppress, f *SuppressFiring) string {
	return ruleID + "/" + GroupHash(group) + "/" + f.Start.Truncate(s.For).UTC().Format(time.RFC3339)
}

func heldDigest(auditID string) string {
	h := sha256.Sum256([]byte(auditID))
	return hex.EncodeToString(h[:8])
}

// SuppressKey names the suppression state of one rule and group, apart
// from any threshold key.
func SuppressKey(ruleID string, group []string) string {
	return "suppress." + ruleID + "." + GroupHash(group)
}
