// Package silence holds silences: what the operator on call puts on
// alerts to keep them from destinations for a while, as Alertmanager's
// silences are. A silence names a rule, a CEL condition over the alert, or
// both; it is stored in the vigil_silences bucket, watched by every
// notifier, and each alert it keeps from a destination is recorded there
// so that what it did can be audited.
package silence

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Limits of a silence.
const (
	// MaxDuration bounds how long a silence lasts. A silence is for a
	// maintenance window or an incident; lasting tuning belongs in the
	// rules, as an exception or an override, where it is reviewed.
	MaxDuration = 30 * 24 * time.Hour
	// Retention is how long, at least, a silence stays listed (`silence
	// list --all`) after it ended, with the record of what it silenced.
	// The bucket keeps every key for MaxDuration + Retention after it was
	// last written (bus.KVConfigs), so nothing in it outlives that.
	Retention = 7 * 24 * time.Hour
	// MaxCommentBytes bounds the comment, the one free text of a silence.
	MaxCommentBytes = 4 << 10
)

// ruleID is the form of a rule id in rule files (rules/parse): a silence
// names a rule the notifier cannot look up, so the form is all that can be
// checked.
var ruleID = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Silence keeps the alerts it matches from every destination from
// CreatedAt until EndsAt, or until it is expired by hand (ExpiredAt).
// Fields are only ever added: notifiers of several versions read it.
type Silence struct {
	ID string `json:"id"`
	// Rule, when set, is the id of the rule whose alerts it matches.
	Rule string `json:"rule,omitempty"`
	// When, when set, is a CEL boolean over `alert` (the alert's JSON
	// fields) that must hold too.
	When      string    `json:"when,omitempty"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	EndsAt    time.Time `json:"endsAt"`
	Comment   string    `json:"comment"`
	// ExpiredAt is when it was ended by hand, before EndsAt.
	ExpiredAt *time.Time `json:"expiredAt,omitempty"`
}

// End is when the silence stops, or stopped, applying.
func (s *Silence) End() time.Time {
	if s.ExpiredAt != nil && s.ExpiredAt.Before(s.EndsAt) {
		return *s.ExpiredAt
	}
	return s.EndsAt
}

// Active reports whether the silence applies at now.
func (s *Silence) Active(now time.Time) bool {
	return !now.Before(s.CreatedAt) && now.Before(s.End())
}

// State is "active" or "expired" at now.
func (s *Silence) State(now time.Time) string {
	if s.Active(now) {
		return "active"
	}
	return "expired"
}

// Spec is what the operator asks for; New makes a silence of it.
type Spec struct {
	Rule, When string
	For        time.Duration
	Comment    string
	Author     string
}

// New checks spec, its condition included, and makes a silence starting
// at now with a fresh id. Each error names the flag that is wrong.
func New(spec Spec, now time.Time) (*Silence, error) {
	var errs []error
	if spec.Rule == "" && strings.TrimSpace(spec.When) == "" {
		errs = append(errs, errors.New("a silence needs --rule, --when or both: without them it would silence every alert"))
	}
	if spec.Rule != "" && !ruleID.MatchString(spec.Rule) {
		errs = append(errs, fmt.Errorf("--rule %q is not a rule id (lowercase letters, digits and single dashes)", spec.Rule))
	}
	if spec.When != "" {
		if _, err := Compile(spec.When); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case spec.For <= 0:
		errs = append(errs, fmt.Errorf("--for must be a positive duration, got %s", spec.For))
	case spec.For > MaxDuration:
		errs = append(errs, fmt.Errorf("--for %s is longer than %s, the most a silence lasts; tune the rule with an exception or an override instead",
			spec.For, Days(MaxDuration)))
	}
	switch {
	case strings.TrimSpace(spec.Comment) == "":
		errs = append(errs, errors.New("--comment is required: say why the alerts are silenced, for whoever reads it later"))
	case len(spec.Comment) > MaxCommentBytes:
		errs = append(errs, fmt.Errorf("--comment is longer than %d bytes", MaxCommentBytes))
	}
	if strings.TrimSpace(spec.Author) == "" {
		errs = append(errs, errors.New("--author is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Millisecond)
	return &Silence{
		ID: id, Rule: spec.Rule, When: spec.When, CreatedBy: spec.Author, CreatedAt: now,
		EndsAt: now.Add(spec.For), Comment: spec.Comment,
	}, nil
}

// idBytes is the randomness of an id: 64 bits, hex-encoded, short enough
// to type and unique among silences.
const idBytes = 8

func newID() (string, error) {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("silence id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ValidID reports whether id has the form of a silence id, so that a
// mistyped one is told apart from one that does not exist.
func ValidID(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Days writes a whole number of days as such ("30 days (720h)"), which Go
// durations do not.
func Days(d time.Duration) string {
	return fmt.Sprintf("%d days (%dh)", d/(24*time.Hour), d/time.Hour)
}
