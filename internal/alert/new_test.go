package alert

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// TestNewCopiesTheEventFields pins the JSON of alerts made from a full
// event and from one without its optional parts: the alert is a public
// schema.
func TestNewCopiesTheEventFields(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	full := &audit.Event{AuditID: "a", Stage: audit.StageResponseComplete, Verb: "create", UserAgent: "kubectl",
		User: audit.UserInfo{Username: "alice", Groups: []string{"g"}}, ImpersonatedUser: &audit.UserInfo{Username: "bob", Groups: []string{"system:masters"}},
		SourceIPs: []string{"10.0.0.1", "10.0.0.2"}, Cluster: "prod", StageTimestamp: at,
		ObjectRef:      &audit.ObjectReference{Resource: "pods", Subresource: "exec", Namespace: "n", Name: "p", APIGroup: "g"},
		ResponseStatus: &audit.Status{Code: 201, Reason: "r"},
		Annotations: map[string]string{AnnotationDecision: "allow", AnnotationReason: `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "admin" to User "alice"`,
			"pod-security.kubernetes.io/enforce-policy": "restricted:latest"}}
	bare := &audit.Event{AuditID: "b", Stage: audit.StageRequestReceived, RequestReceivedTimestamp: at}
	for ev, want := range map[*audit.Event]string{
		full: `{"id":"","rule":"","title":"","severity":"","tags":[],"output":"","cluster":"prod","auditID":"a","stage":"ResponseComplete",` +
			`"time":"2026-01-02T02:04:05.000000006Z","user":"alice","impersonatedUser":"bob","verb":"create","resource":"pods","subresource":"exec",` +
			`"namespace":"n","name":"p","sourceIPs":["10.0.0.1","10.0.0.2"],"userAgent":"kubectl","responseCode":201,"count":1,` +
			`"userGroups":["g"],"impersonatedGroups":["system:masters"],"authorizationDecision":"allow",` +
			`"authorizationReason":"RBAC: allowed by ClusterRoleBinding \"x\" of ClusterRole \"admin\" to User \"alice\""}`,
		bare: `{"id":"","rule":"","title":"","severity":"","tags":[],"output":"","cluster":"","auditID":"b","stage":"RequestReceived",` +
			`"time":"2026-01-02T02:04:05.000000006Z","user":"","impersonatedUser":"","verb":"","resource":"","subresource":"",` +
			`"namespace":"","name":"","sourceIPs":[],"userAgent":"","responseCode":0,"count":1}`,
	} {
		a := New(ev)
		got, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("alert of event %s:\n got %s\nwant %s", ev.AuditID, got, want)
		}
		if len(ev.SourceIPs) > 0 && &a.SourceIPs[0] == &ev.SourceIPs[0] {
			t.Error("the alert shares the event's sourceIPs")
		}
		if len(ev.User.Groups) > 0 && &a.UserGroups[0] == &ev.User.Groups[0] {
			t.Error("the alert shares the event's groups")
		}
	}
}
