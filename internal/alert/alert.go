// Package alert holds the one alert shape vigil uses everywhere: on the
// ALERTS stream, in webhook bodies and in `replay --output json`.
package alert

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Severities, lowest first.
const (
	SeverityInfo     = "info"
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

var severityRank = map[string]int{
	SeverityInfo: 0, SeverityLow: 1, SeverityMedium: 2, SeverityHigh: 3, SeverityCritical: 4,
}

// SeverityRank orders severities; unknown ones rank -1.
func SeverityRank(s string) int {
	r, ok := severityRank[s]
	if !ok {
		return -1
	}
	return r
}

// ValidSeverity reports whether s is one of the five severities.
func ValidSeverity(s string) bool { _, ok := severityRank[s]; return ok }

// Alert is a rule's verdict on an event (or, for thresholds, a group of
// events). Fields are only ever added, never renamed: it is a public schema.
type Alert struct {
	ID               string    `json:"id"`
	Rule             string    `json:"rule"`
	Title            string    `json:"title"`
	Severity         string    `json:"severity"`
	Tags             []string  `json:"tags"`
	Output           string    `json:"output"`
	Cluster          string    `json:"cluster"`
	AuditID          string    `json:"auditID"`
	Stage            string    `json:"stage"`
	Time             time.Time `json:"time"`
	User             string    `json:"user"`
	ImpersonatedUser string    `json:"impersonatedUser"`
	Verb             string    `json:"verb"`
	Resource         string    `json:"resource"`
	Subresource      string    `json:"subresource"`
	Namespace        string    `json:"namespace"`
	Name             string    `json:"name"`
	SourceIPs        []string  `json:"sourceIPs"`
	UserAgent        string    `json:"userAgent"`
	ResponseCode     int64     `json:"responseCode"`
	Count            int       `json:"count"`
	Window           string    `json:"window,omitempty"`
}

// ID is the identity of a per-event alert: one request seen at several
// stages is one alert.
func ID(ruleID, auditID string) string { return ruleID + "/" + auditID }

// New fills an alert's event fields from ev. The caller sets ID, rule
// fields and Output.
func New(ev *audit.Event) *Alert {
	a := &Alert{
		Cluster:   ev.Cluster,
		AuditID:   ev.AuditID,
		Stage:     ev.Stage,
		Time:      ev.Time().UTC(),
		User:      ev.User.Username,
		Verb:      ev.Verb,
		SourceIPs: append([]string{}, ev.SourceIPs...),
		UserAgent: ev.UserAgent,
		Count:     1,
		Tags:      []string{},
	}
	if ev.ImpersonatedUser != nil {
		a.ImpersonatedUser = ev.ImpersonatedUser.Username
	}
	if r := ev.ObjectRef; r != nil {
		a.Resource, a.Subresource, a.Namespace, a.Name = r.Resource, r.Subresource, r.Namespace, r.Name
	}
	a.ResponseCode = ev.ResponseCode()
	return a
}

// SubjectSeverity is the NATS subject token for a severity; rule ids are
// kebab-case and need no escaping.
func Subject(prefix string, a *Alert) string {
	return prefix + "." + a.Severity + "." + strings.ReplaceAll(a.Rule, ".", "_")
}

// Limits on what an alert copies from its event. Every string of an alert
// can be chosen by whoever made the request, and an alert must fit in one
// NATS message (1 MiB by default) with room to spare, or it could never be
// stored and would block the events of its batch until they are
// dead-lettered.
const (
	// MaxFieldBytes bounds each string field, output included.
	MaxFieldBytes = 8 << 10
	// MaxSourceIPs bounds sourceIPs, which X-Forwarded-For can lengthen.
	MaxSourceIPs = 16
)

// Bound cuts each string field of a to MaxFieldBytes (ending it with "…")
// and SourceIPs to MaxSourceIPs, and reports whether anything was cut.
func (a *Alert) Bound() bool {
	cut := false
	for _, s := range []*string{&a.Output, &a.Cluster, &a.AuditID, &a.Stage, &a.User, &a.ImpersonatedUser,
		&a.Verb, &a.Resource, &a.Subresource, &a.Namespace, &a.Name, &a.UserAgent} {
		if len(*s) > MaxFieldBytes {
			*s = truncate(*s, MaxFieldBytes)
			cut = true
		}
	}
	if len(a.SourceIPs) > MaxSourceIPs {
		a.SourceIPs = a.SourceIPs[:MaxSourceIPs]
		cut = true
	}
	for i, ip := range a.SourceIPs {
		if len(ip) > MaxFieldBytes {
			a.SourceIPs[i] = truncate(ip, MaxFieldBytes)
			cut = true
		}
	}
	return cut
}

// truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	const mark = "…"
	n -= len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}
