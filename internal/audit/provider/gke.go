package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// logEntry is the part of a Cloud Logging LogEntry that a GKE audit entry
// fills (https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry).
// encoding/json matches member names case-insensitively, which also reads
// the callerIP spelling some exports use for requestMetadata.callerIp.
type logEntry struct {
	InsertID         string            `json:"insertId"`
	Timestamp        string            `json:"timestamp"`
	ReceiveTimestamp string            `json:"receiveTimestamp"`
	Labels           map[string]string `json:"labels"`
	Operation        struct {
		ID       string `json:"id"`
		Producer string `json:"producer"`
	} `json:"operation"`
	ProtoPayload *cloudAuditLog `json:"protoPayload"`
}

// cloudAuditLog is the AuditLog of a protoPayload
// (https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog).
type cloudAuditLog struct {
	ServiceName        string `json:"serviceName"`
	MethodName         string `json:"methodName"`
	ResourceName       string `json:"resourceName"`
	AuthenticationInfo struct {
		PrincipalEmail string `json:"principalEmail"`
	} `json:"authenticationInfo"`
	AuthorizationInfo []struct {
		Permission string `json:"permission"`
		Resource   string `json:"resource"`
		// Granted is omitted when false, as proto3 JSON omits defaults.
		Granted bool `json:"granted"`
	} `json:"authorizationInfo"`
	RequestMetadata struct {
		CallerIP                string `json:"callerIp"`
		CallerSuppliedUserAgent string `json:"callerSuppliedUserAgent"`
	} `json:"requestMetadata"`
	Status   *rpcStatus      `json:"status"`
	Request  json.RawMessage `json:"request"`
	Response json.RawMessage `json:"response"`
}

// rpcStatus is a google.rpc.Status.
type rpcStatus struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
}

// The audit annotations kube-apiserver's authorizer writes; GKE passes an
// event's annotations on as the entry's labels.
const (
	annotationDecision = "authorization.k8s.io/decision"
	annotationReason   = "authorization.k8s.io/reason"
)

// gkeEvent is the audit.k8s.io/v1 Event a LogEntry becomes, with only what
// GKE gives: empty members are left out rather than written as zeros.
type gkeEvent struct {
	Kind                     string            `json:"kind"`
	APIVersion               string            `json:"apiVersion"`
	Level                    string            `json:"level"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI,omitempty"`
	Verb                     string            `json:"verb"`
	User                     gkeUser           `json:"user"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *objectRef        `json:"objectRef,omitempty"`
	ResponseStatus           *responseStatus   `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty"`
	RequestReceivedTimestamp string            `json:"requestReceivedTimestamp,omitempty"`
	StageTimestamp           string            `json:"stageTimestamp,omitempty"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

type gkeUser struct {
	Username string `json:"username"`
}

type objectRef struct {
	Resource    string `json:"resource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

type responseStatus struct {
	Metadata struct{} `json:"metadata"`
	Status   string   `json:"status,omitempty"`
	Message  string   `json:"message,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Code     int64    `json:"code"`
}

func gkeItem(record []byte) Item {
	data, err := ConvertGKE(record)
	if err != nil {
		return Item{Err: err}
	}
	r, err := audit.ParseRaw(data)
	return Item{Raw: r, Err: err}
}

// ConvertGKE converts one GKE Cloud Audit Logs LogEntry (JSON, as a log
// sink delivers it to Pub/Sub or `gcloud logging read --format=json`
// prints it) into the JSON of an audit.k8s.io/v1 Event. An entry of another
// Google service is ErrNotAudit. docs/ingest.md has the mapping field by
// field and what GKE does not log.
func ConvertGKE(record []byte) ([]byte, error) {
	var e logEntry
	if err := json.Unmarshal(record, &e); err != nil {
		return nil, jsonError(err)
	}
	p := e.ProtoPayload
	if p == nil {
		return nil, errors.New("protoPayload: missing")
	}
	if p.ServiceName != "k8s.io" && !strings.HasPrefix(p.MethodName, "io.k8s.") && e.Operation.Producer != "k8s.io" {
		return nil, fmt.Errorf("%w: protoPayload.serviceName %q is not the Kubernetes API (k8s.io)", ErrNotAudit, p.ServiceName)
	}
	ev := gkeEvent{Kind: "Event", APIVersion: audit.APIVersionV1, Stage: audit.StageResponseComplete}
	// kube-apiserver's auditID is the operation's id; insertId is Cloud
	// Logging's own, the same value in current entries.
	switch {
	case e.Operation.ID != "":
		ev.AuditID = e.Operation.ID
	case e.InsertID != "":
		ev.AuditID = e.InsertID
	default:
		return nil, errors.New("operation.id and insertId: both missing, nothing identifies the request")
	}
	var err error
	if ev.Verb, ev.ObjectRef, ev.RequestURI, err = gkeRequest(p); err != nil {
		return nil, err
	}
	ev.User.Username = p.AuthenticationInfo.PrincipalEmail
	if ip := p.RequestMetadata.CallerIP; ip != "" {
		ev.SourceIPs = []string{ip}
	}
	ev.UserAgent = p.RequestMetadata.CallerSuppliedUserAgent
	if ev.RequestObject, err = gkeBody(p.Request, "protoPayload.request"); err != nil {
		return nil, err
	}
	if ev.ResponseObject, err = gkeBody(p.Response, "protoPayload.response"); err != nil {
		return nil, err
	}
	switch {
	case ev.ResponseObject != nil:
		ev.Level = "RequestResponse"
	case ev.RequestObject != nil:
		ev.Level = "Request"
	default:
		ev.Level = "Metadata"
	}
	ev.ResponseStatus = gkeStatus(p.Status, ev.ResponseObject)
	ev.Annotations = gkeAnnotations(e.Labels, p)
	ts := e.Timestamp
	field := "timestamp"
	if ts == "" {
		ts, field = e.ReceiveTimestamp, "receiveTimestamp"
	}
	if ts != "" {
		t, err := parseLogTime(ts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		ev.RequestReceivedTimestamp = t.UTC().Format(time.RFC3339Nano)
		ev.StageTimestamp = ev.RequestReceivedTimestamp
	}
	return json.Marshal(&ev)
}

// gkeRequest reads what was asked of what: the verb, the object and the
// path.
func gkeRequest(p *cloudAuditLog) (verb string, ref *objectRef, uri string, err error) {
	if path, ok := nonResourceMethod(p.MethodName); ok && p.ResourceName == "" {
		// Non-resource endpoints are only read: GET.
		return "get", nil, path, nil
	}
	if verb, err = methodVerb(p.MethodName); err != nil {
		return "", nil, "", err
	}
	ref, uri, err = gkeObject(p.ResourceName, p.MethodName)
	return verb, ref, uri, err
}

// jsonError names the member a type error is about, as the LogEntry's
// path ("protoPayload.methodName").
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: got a JSON %s, want %s", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map", "ptr":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	}
	return "a number"
}

// methodVerb is the verb of a methodName, its last part:
// io.k8s.core.v1.pods.exec.create is a create.
func methodVerb(method string) (string, error) {
	if method == "" {
		return "", errors.New("protoPayload.methodName: missing, which holds the verb")
	}
	i := strings.LastIndexByte(method, '.')
	if i < 0 || i == len(method)-1 {
		return "", fmt.Errorf("protoPayload.methodName %q: no verb after the last dot", method)
	}
	return method[i+1:], nil
}

// gkeBody is a request or response body as an audit event carries it:
// GKE's "@type" (the object's proto type, core.k8s.io/v1.Pod) gives the
// object's kind when it has none and is dropped.
func gkeBody(raw json.RawMessage, field string) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] != '{' {
		return raw, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	typ, ok := members["@type"]
	if !ok {
		return raw, nil
	}
	delete(members, "@type")
	var t string
	if _, hasKind := members["kind"]; !hasKind && json.Unmarshal(typ, &t) == nil {
		if i := strings.LastIndexByte(t, '.'); i >= 0 && i < len(t)-1 {
			members["kind"], _ = json.Marshal(t[i+1:])
		}
	}
	return json.Marshal(members)
}

// gkeAnnotations are the entry's labels, which hold the apiserver's audit
// annotations. Where they lack the authorization decision, it is read from
// authorizationInfo: allowed when every permission was granted.
func gkeAnnotations(labels map[string]string, p *cloudAuditLog) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	if _, ok := out[annotationDecision]; !ok && len(p.AuthorizationInfo) > 0 {
		decision := "allow"
		for _, a := range p.AuthorizationInfo {
			if !a.Granted {
				decision = "forbid"
			}
		}
		out[annotationDecision] = decision
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// parseLogTime reads a LogEntry timestamp: RFC 3339, or the
// "2006-01-02 15:04:05.000" (UTC) that some log stores export.
func parseLogTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02 15:04:05.999999999", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
}
