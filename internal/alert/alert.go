// Package alert holds the one alert shape vigil uses everywhere: on the
// ALERTS stream, in webhook bodies and in `replay --output json`.
package alert

import (
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
	// Suppressed is how many matches of the rule's suppression group the
	// window before this alert held back.
	Suppressed int `json:"suppressed,omitempty"`
}

// ID is the identity of a per-event alert: one request seen at several
// stages is one alert.
func ID(ruleID, auditID string) string { return ruleID + "/" + auditID }

// New fills an alert's event fields from ev. The caller sets ID, rule
// fields and Output.
func New(ev *audit.Event) *Alert {
	a := &Alert{
		Cluster:      ev.Cluster,
		Time:         ev.Time().UTC(),
		SourceIPs:    append([]string{}, eventSourceIPs(ev)...),
		ResponseCode: eventResponseCode(ev),
		Count:        1,
		Tags:         []string{},
	}
	for _, f := range eventStrings {
		*f.field(a) = f.get(ev)
	}
	return a
}

// The alert's copies of event values, by the values' paths in the event's
// field table, whose getters read an absent part (no impersonatedUser, no
// objectRef) as empty.
var (
	eventStrings = []struct {
		field func(*Alert) *string
		get   func(*audit.Event) string
	}{
		{func(a *Alert) *string { return &a.AuditID }, audit.Getter[string]("auditID")},
		{func(a *Alert) *string { return &a.Stage }, audit.Getter[string]("stage")},
		{func(a *Alert) *string { return &a.User }, audit.Getter[string]("user.username")},
		{func(a *Alert) *string { return &a.ImpersonatedUser }, audit.Getter[string]("impersonatedUser.username")},
		{func(a *Alert) *string { return &a.Verb }, audit.Getter[string]("verb")},
		{func(a *Alert) *string { return &a.Resource }, audit.Getter[string]("objectRef.resource")},
		{func(a *Alert) *string { return &a.Subresource }, audit.Getter[string]("objectRef.subresource")},
		{func(a *Alert) *string { return &a.Namespace }, audit.Getter[string]("objectRef.namespace")},
		{func(a *Alert) *string { return &a.Name }, audit.Getter[string]("objectRef.name")},
		{func(a *Alert) *string { return &a.UserAgent }, audit.Getter[string]("userAgent")},
	}
	eventSourceIPs    = audit.Getter[[]string]("sourceIPs")
	eventResponseCode = audit.Getter[int64]("responseStatus.code")
)

// Default limits on what an alert copies from its event. Every string of
// an alert can be chosen by whoever made the request, and an alert must fit
// in one NATS message (1 MiB by default) with room to spare, or it could
// never be stored and would block the events of its batch until they are
// dead-lettered. engine.max_alert_field_bytes and
// engine.max_alert_source_ips change them.
const (
	// MaxFieldBytes bounds each string field, output included.
	MaxFieldBytes = 8 << 10
	// MaxSourceIPs bounds sourceIPs, which X-Forwarded-For can lengthen.
	MaxSourceIPs = 16
	// MaxBoundedBytes is the most that the bounded fields of an alert may
	// add up to (Limits.Bytes), leaving room in a 1 MiB NATS message for
	// the rest of the alert and its JSON escaping.
	MaxBoundedBytes = 768 << 10
)

// boundedFields is how many string fields BoundTo cuts, sourceIPs aside.
const boundedFields = 12

// Limits bound what an alert copies from its event.
type Limits struct {
	// FieldBytes bounds each string field and each source IP.
	FieldBytes int
	// SourceIPs bounds the number of source IPs.
	SourceIPs int
}

// DefaultLimits are MaxFieldBytes and MaxSourceIPs.
func DefaultLimits() Limits { return Limits{FieldBytes: MaxFieldBytes, SourceIPs: MaxSourceIPs} }

// Fields is the number of strings the limits bound: the string fields and
// the source IPs.
func (l Limits) Fields() int { return boundedFields + l.SourceIPs }

// Bytes is the most the bounded strings of an alert can add up to.
func (l Limits) Bytes() int { return l.Fields() * l.FieldBytes }

// Cut says what BoundTo cut.
type Cut struct {
	// Fields: a string field or a source IP was longer than FieldBytes.
	Fields bool
	// SourceIPs: there were more than SourceIPs source IPs.
	SourceIPs bool
}

// Any reports whether anything was cut.
func (c Cut) Any() bool { return c.Fields || c.SourceIPs }

// BoundTo cuts each string field of a to l.FieldBytes (ending it with "…")
// and SourceIPs to l.SourceIPs, and reports what was cut. Zero limits take
// the defaults.
func (a *Alert) BoundTo(l Limits) Cut {
	if l.FieldBytes <= 0 {
		l.FieldBytes = MaxFieldBytes
	}
	if l.SourceIPs <= 0 {
		l.SourceIPs = MaxSourceIPs
	}
	var cut Cut
	for _, s := range []*string{&a.Output, &a.Cluster, &a.AuditID, &a.Stage, &a.User, &a.ImpersonatedUser,
		&a.Verb, &a.Resource, &a.Subresource, &a.Namespace, &a.Name, &a.UserAgent} {
		if len(*s) > l.FieldBytes {
			*s = truncate(*s, l.FieldBytes)
			cut.Fields = true
		}
	}
	if len(a.SourceIPs) > l.SourceIPs {
		a.SourceIPs = a.SourceIPs[:l.SourceIPs]
		cut.SourceIPs = true
	}
	for i, ip := range a.SourceIPs {
		if len(ip) > l.FieldBytes {
			a.SourceIPs[i] = truncate(ip, l.FieldBytes)
			cut.Fields = true
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
