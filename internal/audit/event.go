// Package audit is vigil's model of a Kubernetes audit event (audit.k8s.io/v1
// Event, also v1beta1 and events without apiVersion) and its decoding from the
// forms kube-apiserver writes: JSON lines and EventList bodies.
//
// The structs below are the one description of the event schema. The
// decoder's member tables, the field table the rules' CEL type provider and
// guards are built from (Schema, Paths) and the getters the alert reads
// through are all generated from them into schema_gen.go. To add a field,
// add it to its struct with its json tag and run go generate; then add a
// decoder edge case to decode_diff_test.go and a rule test that reads it.
// A field rules must not see gets `cel:"-"`. The Go type of a field must be
// one the decoder has a reader for: string, int64, []string,
// map[string]string, map[string][]string, time.Time, json.RawMessage or one
// of these structs (a pointer to one for an optional part of Event).
package audit

//go:generate go run ./internal/fieldgen

import (
	"encoding/json"
	"time"
)

// Stage values of an audit Event.
const (
	StageRequestReceived  = "RequestReceived"
	StageResponseStarted  = "ResponseStarted"
	StageResponseComplete = "ResponseComplete"
	StagePanic            = "Panic"
)

// UserInfo is the authenticated (or impersonated) user of a request.
type UserInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

// ObjectReference names the object a request was about.
type ObjectReference struct {
	Resource        string `json:"resource"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	APIGroup        string `json:"apiGroup"`
	APIVersion      string `json:"apiVersion"`
	ResourceVersion string `json:"resourceVersion"`
	Subresource     string `json:"subresource"`
}

// Status is the subset of metav1.Status an audit event carries.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int64  `json:"code"`
}

// Event is one audit event. Field names follow the audit.k8s.io/v1 JSON
// names. RequestObject and ResponseObject stay raw JSON: they can be large
// and most rules never look at them, so decoding them is left to whoever
// needs them. Decode leaves them pointing into the bytes it decoded.
type Event struct {
	Kind                     string           `json:"kind"`
	APIVersion               string           `json:"apiVersion"`
	Level                    string           `json:"level"`
	AuditID                  string           `json:"auditID"`
	Stage                    string           `json:"stage"`
	RequestURI               string           `json:"requestURI"`
	Verb                     string           `json:"verb"`
	User                     UserInfo         `json:"user" has:"username,groups"`
	ImpersonatedUser         *UserInfo        `json:"impersonatedUser,omitempty"`
	SourceIPs                []string         `json:"sourceIPs"`
	UserAgent                string           `json:"userAgent"`
	ObjectRef                *ObjectReference `json:"objectRef,omitempty"`
	ResponseStatus           *Status          `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage  `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage  `json:"responseObject,omitempty"`
	RequestReceivedTimestamp time.Time        `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time        `json:"stageTimestamp"`
	// Timestamp is the event time of audit.k8s.io/v1alpha1 and early
	// v1beta1 events, which have no requestReceivedTimestamp.
	Timestamp   time.Time         `json:"timestamp" cel:"-"`
	Annotations map[string]string `json:"annotations,omitempty"`

	// Cluster is not part of the audit event: ingest stamps it on the
	// message so that one stream can carry several clusters.
	Cluster string `json:"-"`
	// Stored is not part of the audit event either: when the event was
	// stored on the AUDIT stream, by vigil's (NATS's) clock. Zero offline.
	Stored time.Time `json:"-"`
}

// ResponseCode returns the HTTP status of the response, 0 when unknown.
func (e *Event) ResponseCode() int64 {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// Time is when the request was received, the event time used by windows.
// Events from before v1 may only carry stageTimestamp or timestamp.
func (e *Event) Time() time.Time {
	switch {
	case !e.RequestReceivedTimestamp.IsZero():
		return e.RequestReceivedTimestamp
	case !e.StageTimestamp.IsZero():
		return e.StageTimestamp
	}
	return e.Timestamp
}
