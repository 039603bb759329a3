// Package alert holds the one alert shape vigil uses everywhere: on the
// ALERTS stream, in webhook bodies and in `replay --output json`.
package alert

import (
	"slices"
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

	// Description and RunbookURL are the rule's: why the alert matters
	// and where to read what to do.
	Description string `json:"description,omitempty"`
	RunbookURL  string `json:"runbookURL,omitempty"`
	// UserGroups and ImpersonatedGroups are the groups of User and of
	// ImpersonatedUser.
	UserGroups         []string `json:"userGroups,omitempty"`
	ImpersonatedGroups []string `json:"impersonatedGroups,omitempty"`
	// AuthorizationDecision and AuthorizationReason are the apiserver's
	// annotations authorization.k8s.io/decision and
	// authorization.k8s.io/reason: whether the request was allowed, and by
	// which binding or authorizer.
	AuthorizationDecision string `json:"authorizationDecision,omitempty"`
	AuthorizationReason   string `json:"authorizationReason,omitempty"`
	// WindowSeconds is Window in whole seconds for a threshold alert, and
	// the suppression window's length for an alert of a rule with one.
	WindowSeconds int `json:"windowSeconds,omitempty"`
	// Members is a sample of at most MaxMembers of the events behind a
	// threshold alert (the latest counted in its window) or, for an
	// alert that opens a suppression window, of the matches the window
	// before held back (the earliest); for a sequence, its events, one
	// per step.
	Members []Member `json:"members,omitempty"`
	// Steps names the step of each member of a sequence alert, and
	// ElapsedSeconds is the time from its first step to its last.
	Steps          []string `json:"steps,omitempty"`
	ElapsedSeconds int      `json:"elapsedSeconds,omitempty"`
}

// ID is the identity of a per-event alert: one request seen at several
// stages is one alert.
func ID(ruleID, auditID string) string { return ruleID + "/" + auditID }

// The audit annotations the apiserver's authorizer writes on every
// request it decides.
const (
	AnnotationDecision = "authorization.k8s.io/decision"
	AnnotationReason   = "authorization.k8s.io/reason"
)

// New fills an alert's event fields from ev. The caller sets ID, rule
// fields and Output.
func New(ev *audit.Event) *Alert {
	ann := eventAnnotations(ev)
	a := &Alert{
		Cluster:               ev.Cluster,
		Time:                  ev.Time().UTC(),
		SourceIPs:             append([]string{}, eventSourceIPs(ev)...),
		ResponseCode:          eventResponseCode(ev),
		Count:                 1,
		Tags:                  []string{},
		UserGroups:            slices.Clone(eventUserGroups(ev)),
		ImpersonatedGroups:    slices.Clone(eventImpersonatedGroups(ev)),
		AuthorizationDecision: ann[AnnotationDecision],
		AuthorizationReason:   ann[AnnotationReason],
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
	eventSourceIPs          = audit.Getter[[]string]("sourceIPs")
	eventResponseCode       = audit.Getter[int64]("responseStatus.code")
	eventUserGroups         = audit.Getter[[]string]("user.groups")
	eventImpersonatedGroups = audit.Getter[[]string]("impersonatedUser.groups")
	eventAnnotations        = audit.Getter[map[string]string]("annotations")
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
	// MaxGroups bounds userGroups and impersonatedGroups each: an
	// authenticating proxy or an OIDC claim can give a user hundreds.
	MaxGroups = 64
	// MaxItemBytes bounds each group and each string of a member, below
	// MaxFieldBytes: there are up to MaxGroups groups twice over and
	// MaxMembers members of memberStrings strings, and a member is also
	// kept in the threshold state of its group.
	MaxItemBytes = 512
	// MaxRunbookURL bounds runbookURL, which the rule loader checks; a
	// longer one is dropped rather than cut, since a cut URL is a wrong
	// link.
	MaxRunbookURL = 2048
	// MaxBoundedBytes is the most that the bounded fields of an alert may
	// add up to (Limits.Bytes), leaving room in a 1 MiB NATS message for
	// the rest of the alert and its JSON escaping.
	MaxBoundedBytes = 768 << 10
)

// boundedFields is how many string fields BoundTo cuts to FieldBytes,
// sourceIPs aside.
const boundedFields = 15

// Limits bound what an alert copies from its event.
type Limits struct {
	// FieldBytes bounds each string field and each source IP, and with
	// MaxItemBytes each group and each string of a member.
	FieldBytes int
	// SourceIPs bounds the number of source IPs.
	SourceIPs int
	// Groups bounds the number of userGroups and of impersonatedGroups
	// (MaxGroups when zero).
	Groups int
}

// DefaultLimits are MaxFieldBytes, MaxSourceIPs and MaxGroups.
func DefaultLimits() Limits {
	return Limits{FieldBytes: MaxFieldBytes, SourceIPs: MaxSourceIPs, Groups: MaxGroups}
}

// withDefaults fills the zero limits with the defaults.
func (l Limits) withDefaults() Limits {
	if l.FieldBytes <= 0 {
		l.FieldBytes = MaxFieldBytes
	}
	if l.SourceIPs <= 0 {
		l.SourceIPs = MaxSourceIPs
	}
	if l.Groups <= 0 {
		l.Groups = MaxGroups
	}
	return l
}

// itemBytes bounds each group and each string of a member.
func (l Limits) itemBytes() int { return min(l.FieldBytes, MaxItemBytes) }

// Fields is the number of strings the limits bound to FieldBytes: the
// string fields and the source IPs.
func (l Limits) Fields() int { return boundedFields + l.withDefaults().SourceIPs }

// Bytes is the most the bounded strings of an alert can add up to: the
// fields at FieldBytes, the groups, the members' strings and the step
// names at
// min(FieldBytes, MaxItemBytes), and the runbook URL.
func (l Limits) Bytes() int {
	d := l.withDefaults()
	items := 2*d.Groups + MaxMembers*(memberStrings+1) // a step name per member
	return l.Fields()*d.FieldBytes + items*d.itemBytes() + MaxRunbookURL
}

// Cut says what BoundTo cut.
type Cut struct {
	// Fields: a string field, a source IP, a group or a member's string
	// was longer than its bound, or the runbook URL was dropped.
	Fields bool
	// SourceIPs: there were more than SourceIPs source IPs.
	SourceIPs bool
	// Groups: there were more than Groups user or impersonated groups.
	Groups bool
	// Members: there were more than MaxMembers members.
	Members bool
}

// Any reports whether anything was cut.
func (c Cut) Any() bool { return c.Fields || c.SourceIPs || c.Groups || c.Members }

// BoundTo cuts each string field of a to l.FieldBytes (ending it with "…"),
// SourceIPs to l.SourceIPs, each group list to l.Groups and Members to
// MaxMembers, and reports what was cut. Zero limits take the defaults.
func (a *Alert) BoundTo(l Limits) Cut {
	l = l.withDefaults()
	var cut Cut
	cutStrings := func(n int, ss ...*string) {
		for _, s := range ss {
			if len(*s) > n {
				*s = truncate(*s, n)
				cut.Fields = true
			}
		}
	}
	cutList := func(list *[]string, n int, over *bool) {
		if len(*list) > n {
			*list = (*list)[:n]
			*over = true
		}
		for i := range *list {
			cutStrings(l.itemBytes(), &(*list)[i])
		}
	}
	cutStrings(l.FieldBytes, &a.Output, &a.Cluster, &a.AuditID, &a.Stage, &a.User, &a.ImpersonatedUser,
		&a.Verb, &a.Resource, &a.Subresource, &a.Namespace, &a.Name, &a.UserAgent,
		&a.Description, &a.AuthorizationDecision, &a.AuthorizationReason)
	if len(a.RunbookURL) > MaxRunbookURL {
		a.RunbookURL = ""
		cut.Fields = true
	}
	if len(a.SourceIPs) > l.SourceIPs {
		a.SourceIPs = a.SourceIPs[:l.SourceIPs]
		cut.SourceIPs = true
	}
	for i := range a.SourceIPs {
		cutStrings(l.FieldBytes, &a.SourceIPs[i])
	}
	cutList(&a.UserGroups, l.Groups, &cut.Groups)
	cutList(&a.ImpersonatedGroups, l.Groups, &cut.Groups)
	if len(a.Members) > MaxMembers {
		a.Members = a.Members[:MaxMembers]
		cut.Members = true
	}
	for i := range a.Members {
		if a.Members[i].boundTo(l.itemBytes()) {
			cut.Fields = true
		}
	}
	cutList(&a.Steps, MaxMembers, &cut.Members)
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
