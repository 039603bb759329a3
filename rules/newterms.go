package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// TermsResolution divides a first-seen rule's forget period into the steps
// at which a value's last sighting is stored: storing every sighting would
// write the shared state on every matching event, and a value unseen for
// forget less a 32nd is as good as forgotten.
const TermsResolution = 32

// TermsState is what a first-seen rule knows of one entity: when it was
// first seen, which starts its learning, and the values it has shown.
// Plain data like WindowState, kept in the same store.
type TermsState struct {
	First  time.Time             `json:"first"`
	Values map[string]*TermValue `json:"values,omitempty"`
}

// TermValue is one value an entity has shown, by its digest.
type TermValue struct {
	// Since is when the value was first seen (again, once forgotten);
	// Last when it was last stored as seen.
	Since time.Time `json:"since"`
	Last  time.Time `json:"last"`
	// AuditID is the request that showed the value new after learning,
	// and alerted; empty for a value learned.
	AuditID string `json:"auditID,omitempty"`
}

// TermFiring is a value new to its entity: Since identifies its alert.
type TermFiring struct {
	Since time.Time
}

// TermsObservation is what one sighting did to an entity's state.
type TermsObservation struct {
	// Fired is set when the value is new (or the request that found it
	// new is seen again: a redelivery, a later stage).
	Fired *TermFiring
	// Changed: the state must be stored.
	Changed bool
	// Evicted counts values dropped to stay within max_values.
	Evicted int
}

// Observe records that the entity showed value in request auditID at event
// time at. A value is new when the entity was first seen more than learn
// before, and the value was never seen or not for forget. Values are
// learned whatever order their events arrive in: the entity's first
// sighting is the earliest event time seen, not the first to arrive.
func (st *TermsState) Observe(nt *NewTerms, value, auditID string, at time.Time) TermsObservation {
	var o TermsObservation
	if st.First.IsZero() || at.Before(st.First) {
		st.First = at
		o.Changed = true
	}
	d := termDigest(value)
	v := st.Values[d]
	if v != nil && v.AuditID != "" && v.AuditID == auditID {
		o.Fired = &TermFiring{Since: v.Since}
		return o
	}
	if v != nil && at.Sub(v.Last) >= nt.Forget {
		v = nil // forgotten: new again
	}
	if v != nil {
		if at.Sub(v.Last) > nt.Forget/TermsResolution {
			v.Last = at
			o.Changed = true
		}
		if v.AuditID == "" && at.Before(v.Since) {
			v.Since = at
			o.Changed = true
		}
		return o
	}
	v = &TermValue{Since: at, Last: at}
	if at.After(st.First.Add(nt.Learn)) {
		v.AuditID = auditID
		o.Fired = &TermFiring{Since: at}
	}
	if st.Values == nil {
		st.Values = map[string]*TermValue{}
	}
	st.Values[d] = v
	o.Changed = true
	o.Evicted = st.prune(nt, at)
	return o
}

// prune forgets the values unseen for forget before at, then the least
// recently seen until max_values remain, counting only the latter: a value
// forgotten in time is no loss.
func (st *TermsState) prune(nt *NewTerms, at time.Time) int {
	for k, v := range st.Values {
		if at.Sub(v.Last) >= nt.Forget {
			delete(st.Values, k)
		}
	}
	evicted := 0
	for len(st.Values) > nt.MaxValues {
		oldest := ""
		for k, v := range st.Values {
			if o := st.Values[oldest]; oldest == "" || v.Last.Before(o.Last) || v.Last.Equal(o.Last) && k < oldest {
				oldest = k
			}
		}
		delete(st.Values, oldest)
		evicted++
	}
	return evicted
}

// Known reports whether a sighting would change nothing and raise nothing,
// judged on a copy of the state read earlier: stored state only ever moves
// the other way (values' last sightings later, their first ones and the
// entity's earlier), so what holds of the copy holds of the store, and a
// worker can skip reading it. The request that alerted is never known, so
// that its redelivery alerts again.
func (st *TermsState) Known(nt *NewTerms, value, auditID string, at time.Time) bool {
	v := st.Values[termDigest(value)]
	return v != nil && v.AuditID != auditID && !at.Before(st.First) &&
		at.Sub(v.Last) <= nt.Forget/TermsResolution && (v.AuditID != "" || !at.Before(v.Since))
}

func termDigest(value string) string {
	h := sha256.Sum256([]byte(value))
	return hex.EncodeToString(h[:8])
}

// TermsKey names the state of one first-seen rule's entity. It carries
// the rule's definition tag: a rule whose condition or fields changed
// reads none of what the old one learned.
func TermsKey(r *Rule, entity []string) string {
	return "terms." + r.ID + "." + r.termsTag + "." + GroupHash(entity)
}

// TermsValue is the one string a match's value fields form.
func TermsValue(m Match) string { return strings.Join(m.TermsValue, "\x00") }

// TermsAlertID identifies the alert of a value new to its entity by rule,
// entity, value and when it became new, truncated to the forget period:
// workers that see the value's first events in different orders must
// agree on the one alert, and a value new again after being forgotten
// gives another.
func TermsAlertID(r *Rule, m Match, f *TermFiring) string {
	key := append(append([]string{}, m.TermsEntity...), "\x01"+TermsValue(m))
	return r.ID + "/" + GroupHash(key) + "/" + f.Since.Truncate(r.NewTerms.Forget).UTC().Format(time.RFC3339)
}

// termsTag digests what decides a first-seen rule's state: its condition,
// stages and fields.
func termsTag(d *ruleDef) string {
	h := sha256.New()
	write := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	if d.Condition != nil {
		write(d.Condition.Text)
	}
	for _, s := range d.Stages {
		write(s)
	}
	write("entity")
	for _, x := range d.TermsEntity {
		write(x.Text)
	}
	write("value")
	for _, x := range d.TermsValue {
		write(x.Text)
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}
