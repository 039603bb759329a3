package alert

import (
	"cmp"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// MaxMembers bounds the member events an alert carries.
const MaxMembers = 10

// memberStrings is how many strings a Member has.
const memberStrings = 7

// Member is one event behind a threshold or suppression alert: enough to
// tell who did what to which object, and when, without the event.
type Member struct {
	AuditID     string    `json:"auditID"`
	Time        time.Time `json:"time"`
	User        string    `json:"user"`
	Verb        string    `json:"verb"`
	Resource    string    `json:"resource"`
	Subresource string    `json:"subresource"`
	Namespace   string    `json:"namespace"`
	Name        string    `json:"name"`
}

// NewMember is the member of ev, its strings cut to MaxItemBytes: it is
// kept in the threshold state of its group, which must stay small.
func NewMember(ev *audit.Event) Member {
	var a Alert
	for _, f := range eventStrings {
		*f.field(&a) = f.get(ev)
	}
	m := Member{AuditID: a.AuditID, Time: ev.Time().UTC(), User: a.User, Verb: a.Verb,
		Resource: a.Resource, Subresource: a.Subresource, Namespace: a.Namespace, Name: a.Name}
	m.boundTo(MaxItemBytes)
	return m
}

// boundTo cuts each string of m to n bytes and reports whether it cut.
func (m *Member) boundTo(n int) bool {
	cut := false
	for _, s := range []*string{&m.AuditID, &m.User, &m.Verb, &m.Resource, &m.Subresource, &m.Namespace, &m.Name} {
		if len(*s) > n {
			*s = truncate(*s, n)
			cut = true
		}
	}
	return cut
}

// CompareMembers orders members by time, then auditID: the order alerts
// list them in, whatever order their events arrived in.
func CompareMembers(a, b Member) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.AuditID, b.AuditID)
}
