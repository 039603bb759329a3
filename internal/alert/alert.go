// Package alert holds the one alert shape vigil uses everywhere: on the
// ALERTS stream, in webhook bodies and in `replay --output json`.
package alert

import (
	"strings"
	"time"

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
