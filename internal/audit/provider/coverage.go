package provider

import (
	"strings"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Source is what a managed service delivers of kube-apiserver's audit
// events: which values of an event it leaves out or only gives in part,
// and which requests it logs less of. What it says of GKE follows from the
// conversion in this package (a test holds the two together); of the audit
// policies, what the providers document.
type Source struct {
	// Name is how commands name the source: gke, eks, aks, aks-admin.
	Name  string
	Title string
	// Format is the format of its records.
	Format Format
	// Fields are the event values it does not carry whole; every other is
	// as kube-apiserver writes it.
	Fields []Field
	// Stages are the stages it delivers; nil for every stage the audit
	// policy logs.
	Stages []string
	// Gaps are requests it logs less of than an audit policy can.
	Gaps []Gap
	// Notes are what holds of all its events.
	Notes []string
}

// Carriage is how much of a value a source gives.
type Carriage string

// Carriages of a Field.
const (
	Absent  Carriage = "absent"
	Partial Carriage = "partial"
)

// Field is a value of the event that a source does not carry whole.
type Field struct {
	// Path is the value's path in the event, as rules read it.
	Path     string
	Carriage Carriage
	Why      string
	// As, for a Partial value, changes an event the apiserver wrote into
	// what the source delivers of the value, for a check to try rules on;
	// nil when that cannot be told. ev is the caller's to change.
	As func(ev *audit.Event)
}

// Gap is a part of the requests a source logs less of: their bodies, or
// the whole event. A nil list means any value.
type Gap struct {
	Resources    []string
	Subresources []string
	Verbs        []string
	// Lost are the bodies lost ("requestObject", "responseObject"); none
	// means the event itself is not delivered.
	Lost []string
	// Unless is the setting under which the gap closes, if any.
	Unless string
	Why    string
}

var (
	readVerbs = []string{"get", "list", "watch"}
	// gkePolicy is what GKE says of its audit policy: kube-apiserver runs
	// with the policy that cluster/gce/gci/configure-helper.sh of
	// Kubernetes writes.
	gkePolicy = "the audit policy GKE runs kube-apiserver with (that of Kubernetes' cluster/gce/gci/configure-helper.sh)"
	principal = "Cloud Audit Logs name the principal only (authenticationInfo.principalEmail)"
	aksNote   = "AKS has been seen to cut a long properties.log (at 16 KiB); such an event is dead-lettered as cut short, " +
		"and a rule misses it, most often a write logged with large bodies"
)

// Sources describes the managed services vigil reads, in a stable order.
func Sources() []Source {
	return []Source{{
		Name: "gke", Title: "GKE: Cloud Audit Logs LogEntries, through a log sink", Format: FormatGKE,
		Fields: []Field{
			{"user.groups", Absent, principal, nil},
			{"user.uid", Absent, principal, nil},
			{"user.extra", Absent, principal, nil},
			{"impersonatedUser", Absent, "the LogEntry has no impersonated user", nil},
			{"objectRef.uid", Absent, "resourceName holds group, version, namespace, resource, name and subresource only", nil},
			{"objectRef.resourceVersion", Absent, "resourceName holds group, version, namespace, resource, name and subresource only", nil},
			{"sourceIPs", Partial, "requestMetadata.callerIp is one address, not the apiserver's list", firstSourceIP},
			{"requestURI", Partial, "rebuilt from resourceName: the path without its query string", pathOnly},
			{"responseStatus.code", Partial, "the HTTP status of protoPayload.status's google.rpc code (201 and 101 read as 200, 422 as 400); " +
				"exact when the response body is a Status", rpcCode},
			{"responseStatus.reason", Partial, "only when the response body is a Status", nil},
			{"level", Partial, "inferred from the bodies the entry has", nil},
			{"requestReceivedTimestamp", Partial, "the entry's timestamp", nil},
			{"stageTimestamp", Partial, "the entry's timestamp", oneTimestamp},
		},
		Stages: []string{audit.StageResponseComplete},
		Gaps: []Gap{
			{Verbs: readVerbs, Unless: "Data Access audit logs (ADMIN_READ, DATA_READ) are enabled for the Kubernetes Engine API",
				Why: "GKE writes reads to the Data Access log, which is off by default"},
			{Resources: []string{"events"}, Why: gkePolicy + " does not log requests on Events"},
			{Resources: []string{"secrets", "configmaps", "tokenreviews"}, Lost: []string{"requestObject", "responseObject"},
				Why: gkePolicy + " logs them at Metadata"},
			{Resources: []string{"serviceaccounts"}, Subresources: []string{"token"}, Lost: []string{"requestObject", "responseObject"},
				Why: gkePolicy + " logs TokenRequests at Metadata"},
			{Verbs: readVerbs, Lost: []string{"responseObject"}, Why: gkePolicy + " logs reads at Request level"},
		},
		Notes: []string{"one entry per request, read as stage ResponseComplete (exec and attach too, which the apiserver logs at ResponseStarted)"},
	}, {
		Name: "eks", Title: "EKS: CloudWatch Logs, log streams kube-apiserver-audit-*", Format: FormatCloudWatch,
		Notes: []string{
			"each message is kube-apiserver's Event, every field as it writes it; what is logged, and at which level, " +
				"is the audit policy EKS runs kube-apiserver with",
			"an event over CloudWatch Logs' size limit arrives cut, ending with [Truncated...]; it is dead-lettered as cut short, " +
				"and a rule misses it, most often a write logged with large bodies",
		},
	}, {
		Name: "aks", Title: "AKS: diagnostic records of category kube-audit", Format: FormatAKS,
		Notes: []string{"properties.log is kube-apiserver's Event, every field as it writes it", aksNote},
	}, {
		Name: "aks-admin", Title: "AKS: diagnostic records of category kube-audit-admin", Format: FormatAKS,
		Gaps: []Gap{{Verbs: []string{"get", "list"}, Unless: "the diagnostic setting sends kube-audit instead",
			Why: "kube-audit-admin leaves out get and list requests"}},
		Notes: []string{"properties.log is kube-apiserver's Event, every field as it writes it", aksNote},
	}}
}

func firstSourceIP(ev *audit.Event) {
	if len(ev.SourceIPs) > 1 {
		ev.SourceIPs = ev.SourceIPs[:1]
	}
}

func pathOnly(ev *audit.Event) {
	ev.RequestURI, _, _ = strings.Cut(ev.RequestURI, "?")
}

func rpcCode(ev *audit.Event) {
	if ev.ResponseStatus != nil {
		st := *ev.ResponseStatus
		st.Code = GKEResponseCode(st.Code)
		ev.ResponseStatus = &st
	}
}

func oneTimestamp(ev *audit.Event) { ev.StageTimestamp = ev.RequestReceivedTimestamp }
