package provider

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// gkeEntry is a GKE Admin Activity entry as a log sink delivers it: a pod
// created with kubectl, request and response logged.
const gkeEntry = `{
  "insertId": "6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42",
  "labels": {
    "authorization.k8s.io/decision": "allow",
    "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"cluster-admin\" to User \"alice@example.com\"",
    "pod-security.kubernetes.io/enforce-policy": "privileged:latest"
  },
  "logName": "projects/demo/logs/cloudaudit.googleapis.com%2Factivity",
  "operation": {"first": true, "id": "6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42", "last": true, "producer": "k8s.io"},
  "protoPayload": {
    "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
    "authenticationInfo": {"principalEmail": "alice@example.com"},
    "authorizationInfo": [{"granted": true, "permission": "io.k8s.core.v1.pods.create", "resource": "core/v1/namespaces/default/pods/web"}],
    "methodName": "io.k8s.core.v1.pods.create",
    "request": {"@type": "core.k8s.io/v1.Pod", "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
      "spec": {"hostNetwork": true, "containers": [{"name": "web", "image": "nginx"}]}},
    "requestMetadata": {"callerIp": "203.0.113.7", "callerSuppliedUserAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225"},
    "resourceName": "core/v1/namespaces/default/pods/web",
    "response": {"@type": "core.k8s.io/v1.Pod", "metadata": {"name": "web", "namespace": "default", "uid": "0b7e"}, "status": {"phase": "Pending"}},
    "serviceName": "k8s.io",
    "status": {}
  },
  "receiveTimestamp": "2026-03-04T10:00:01.5Z",
  "resource": {"labels": {"cluster_name": "prod", "location": "europe-west1", "project_id": "demo"}, "type": "k8s_cluster"},
  "severity": "NOTICE",
  "timestamp": "2026-03-04T10:00:00.123456Z"
}`

// deleted removes a member in patch.
var deleted = &struct{}{}

// patch returns record with members set (or deleted) by their dotted path.
func patch(t *testing.T, record string, set map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(record), &m); err != nil {
		t.Fatal(err)
	}
	for path, v := range set {
		parts := strings.Split(path, ".")
		obj := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := obj[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[p] = next
			}
			obj = next
		}
		if v == deleted {
			delete(obj, parts[len(parts)-1])
		} else {
			obj[parts[len(parts)-1]] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeGKE(t *testing.T, record []byte) *audit.Event {
	t.Helper()
	b, err := Decode(record)
	if err != nil {
		t.Fatal(err)
	}
	if b.Format != FormatGKE || len(b.Items) != 1 {
		t.Fatalf("decoded as %s with %d items, want one GKE item", b.Format, len(b.Items))
	}
	if err := b.Items[0].Err; err != nil {
		t.Fatal(err)
	}
	ev, err := audit.Decode(b.Items[0].Raw.Data)
	if err != nil {
		t.Fatalf("converted event does not decode: %v\n%s", err, b.Items[0].Raw.Data)
	}
	return ev
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestGKEEntryBecomesTheApiserversEvent(t *testing.T) {
	ev := decodeGKE(t, []byte(gkeEntry))
	at := time.Date(2026, 3, 4, 10, 0, 0, 123456000, time.UTC)
	want := audit.Event{
		Kind: "Event", APIVersion: "audit.k8s.io/v1", Level: "RequestResponse",
		AuditID: "6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42", Stage: "ResponseComplete",
		RequestURI: "/api/v1/namespaces/default/pods/web", Verb: "create",
		User:      audit.UserInfo{Username: "alice@example.com"},
		SourceIPs: []string{"203.0.113.7"}, UserAgent: "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
		ObjectRef:                &audit.ObjectReference{Resource: "pods", Namespace: "default", Name: "web", APIVersion: "v1"},
		ResponseStatus:           &audit.Status{Code: 200},
		RequestReceivedTimestamp: at, StageTimestamp: at,
		Annotations: map[string]string{
			"authorization.k8s.io/decision":             "allow",
			"authorization.k8s.io/reason":               `RBAC: allowed by ClusterRoleBinding "ops" of ClusterRole "cluster-admin" to User "alice@example.com"`,
			"pod-security.kubernetes.io/enforce-policy": "privileged:latest",
		},
	}
	jsonEqual(t, ev.RequestObject, `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
		"spec": {"hostNetwork": true, "containers": [{"name": "web", "image": "nginx"}]}}`)
	jsonEqual(t, ev.ResponseObject, `{"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "0b7e"}, "status": {"phase": "Pending"}}`)
	ev.RequestObject, ev.ResponseObject = nil, nil
	if !reflect.DeepEqual(*ev, want) {
		t.Errorf("got  %+v\nwant %+v", *ev, want)
	}
}

// Each row changes the entry in one way and checks what that part of the
// entry becomes.
func TestGKEFieldMapping(t *testing.T) {
	ref := func(ev *audit.Event) audit.ObjectReference {
		if ev.ObjectRef == nil {
			return audit.ObjectReference{Resource: "<none>"}
		}
		return *ev.ObjectRef
	}
	code := func(ev *audit.Event) int64 {
		if ev.ResponseStatus == nil {
			return -1
		}
		return ev.ResponseStatus.Code
	}
	cases := []struct {
		name  string
		set   map[string]any
		check func(*audit.Event) (got, want any)
	}{
		{"cluster-scoped object", map[string]any{"protoPayload.resourceName": "rbac.authorization.k8s.io/v1/clusterroles/system:controller"},
			func(ev *audit.Event) (any, any) {
				return []any{ref(ev), ev.RequestURI}, []any{audit.ObjectReference{Resource: "clusterroles", Name: "system:controller",
					APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"}, "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:controller"}
			}},
		{"list in a namespace", map[string]any{"protoPayload.resourceName": "core/v1/namespaces/default/pods"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "pods", Namespace: "default", APIVersion: "v1"}
			}},
		{"list across namespaces", map[string]any{"protoPayload.resourceName": "core/v1/secrets"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "secrets", APIVersion: "v1"}
			}},
		{"subresource", map[string]any{"protoPayload.resourceName": "core/v1/namespaces/prod/pods/db/exec"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "pods", Namespace: "prod", Name: "db", Subresource: "exec", APIVersion: "v1"}
			}},
		{"a namespace", map[string]any{"protoPayload.resourceName": "core/v1/namespaces/team-a"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "namespaces", Name: "team-a", APIVersion: "v1"}
			}},
		{"a namespace's finalize", map[string]any{"protoPayload.resourceName": "core/v1/namespaces/team-a/finalize"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "namespaces", Name: "team-a", Subresource: "finalize", APIVersion: "v1"}
			}},
		{"custom resource", map[string]any{"protoPayload.resourceName": "etcd.database.coreos.com/v1beta2/namespaces/ns/etcdbackups/b1"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "etcdbackups", Namespace: "ns", Name: "b1",
					APIGroup: "etcd.database.coreos.com", APIVersion: "v1beta2"}
			}},
		{"non-resource path", map[string]any{"protoPayload.resourceName": "/readyz", "protoPayload.methodName": "io.k8s.get"},
			func(ev *audit.Event) (any, any) {
				return []any{ref(ev), ev.RequestURI, ev.Verb}, []any{audit.ObjectReference{Resource: "<none>"}, "/readyz", "get"}
			}},
		{"non-resource method", map[string]any{"protoPayload.resourceName": deleted, "protoPayload.methodName": "io.k8s.livez"},
			func(ev *audit.Event) (any, any) {
				return []any{ref(ev), ev.RequestURI, ev.Verb}, []any{audit.ObjectReference{Resource: "<none>"}, "/livez", "get"}
			}},
		{"no resourceName: the method tells", map[string]any{"protoPayload.resourceName": deleted,
			"protoPayload.methodName": "io.k8s.authorization.rbac.v1.clusterrolebindings.create"},
			func(ev *audit.Event) (any, any) {
				return []any{ref(ev), ev.RequestURI, ev.Verb}, []any{audit.ObjectReference{Resource: "clusterrolebindings",
					APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"}, "", "create"}
			}},
		{"subresource in the method", map[string]any{"protoPayload.resourceName": deleted, "protoPayload.methodName": "io.k8s.core.v1.pods.exec.create"},
			func(ev *audit.Event) (any, any) {
				return ref(ev), audit.ObjectReference{Resource: "pods", Subresource: "exec", APIVersion: "v1"}
			}},
		{"denied", map[string]any{"protoPayload.status": map[string]any{"code": 7, "message": "PERMISSION_DENIED"}},
			func(ev *audit.Event) (any, any) {
				return *ev.ResponseStatus, audit.Status{Code: 403, Status: "Failure", Message: "PERMISSION_DENIED"}
			}},
		{"not found", map[string]any{"protoPayload.status": map[string]any{"code": 5}}, func(ev *audit.Event) (any, any) { return code(ev), int64(404) }},
		{"already exists", map[string]any{"protoPayload.status": map[string]any{"code": 6}}, func(ev *audit.Event) (any, any) { return code(ev), int64(409) }},
		{"unauthenticated", map[string]any{"protoPayload.status": map[string]any{"code": 16}}, func(ev *audit.Event) (any, any) { return code(ev), int64(401) }},
		{"a Status response has the apiserver's code", map[string]any{
			"protoPayload.status": map[string]any{"code": 3, "message": "invalid"},
			"protoPayload.response": map[string]any{"@type": "core.k8s.io/v1.Status", "status": "Failure", "reason": "Invalid",
				"message": `Pod "web" is invalid`, "code": 422}},
			func(ev *audit.Event) (any, any) {
				return *ev.ResponseStatus, audit.Status{Code: 422, Status: "Failure", Reason: "Invalid", Message: `Pod "web" is invalid`}
			}},
		{"no status", map[string]any{"protoPayload.status": deleted}, func(ev *audit.Event) (any, any) { return code(ev), int64(-1) }},
		{"decision from authorizationInfo", map[string]any{"labels": deleted,
			"protoPayload.authorizationInfo": []any{map[string]any{"granted": true}, map[string]any{"permission": "io.k8s.core.v1.pods.create"}}},
			func(ev *audit.Event) (any, any) {
				return ev.Annotations, map[string]string{"authorization.k8s.io/decision": "forbid"}
			}},
		{"the label's decision wins", map[string]any{"labels": map[string]any{"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}},
			func(ev *audit.Event) (any, any) {
				return ev.Annotations, map[string]string{"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
			}},
		{"no bodies: Metadata", map[string]any{"protoPayload.request": deleted, "protoPayload.response": deleted},
			func(ev *audit.Event) (any, any) {
				return []any{ev.Level, ev.RequestObject == nil, ev.ResponseObject == nil}, []any{"Metadata", true, true}
			}},
		{"request only: Request", map[string]any{"protoPayload.response": deleted},
			func(ev *audit.Event) (any, any) { return ev.Level, "Request" }},
		{"kind from @type", map[string]any{"protoPayload.request": map[string]any{"@type": "core.k8s.io/v1.Service", "spec": map[string]any{"type": "NodePort"}}},
			func(ev *audit.Event) (any, any) {
				return string(ev.RequestObject), `{"kind":"Service","spec":{"type":"NodePort"}}`
			}},
		{"auditID from insertId", map[string]any{"operation": deleted},
			func(ev *audit.Event) (any, any) { return ev.AuditID, "6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42" }},
		{"operation.id is the auditID", map[string]any{"insertId": "x1"},
			func(ev *audit.Event) (any, any) { return ev.AuditID, "6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42" }},
		{"receiveTimestamp without timestamp", map[string]any{"timestamp": deleted},
			func(ev *audit.Event) (any, any) { return ev.Time(), time.Date(2026, 3, 4, 10, 0, 1, 5e8, time.UTC) }},
		{"space-separated timestamp", map[string]any{"timestamp": "2024-02-16 11:48:22.742"},
			func(ev *audit.Event) (any, any) {
				return ev.Time(), time.Date(2024, 2, 16, 11, 48, 22, 742e6, time.UTC)
			}},
		{"callerIP spelling", map[string]any{"protoPayload.requestMetadata": map[string]any{"callerIP": "198.51.100.1"}},
			func(ev *audit.Event) (any, any) { return ev.SourceIPs, []string{"198.51.100.1"} }},
		{"no caller", map[string]any{"protoPayload.requestMetadata": deleted},
			func(ev *audit.Event) (any, any) { return []any{ev.SourceIPs, ev.UserAgent}, []any{[]string(nil), ""} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, want := tc.check(decodeGKE(t, patch(t, gkeEntry, tc.set)))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestGKEErrorsNameTheField(t *testing.T) {
	cases := []struct {
		set     map[string]any
		want    string
		notK8s  bool
		overall bool
	}{
		{set: map[string]any{"protoPayload.methodName": deleted}, want: "protoPayload.methodName: missing"},
		{set: map[string]any{"protoPayload.methodName": 12}, want: "protoPayload.methodName: got a JSON number, want a string"},
		{set: map[string]any{"protoPayload.methodName": "io.k8s.core.v1.pods."}, want: `protoPayload.methodName "io.k8s.core.v1.pods.": no verb`},
		{set: map[string]any{"protoPayload.resourceName": "pods/web"}, want: `protoPayload.resourceName "pods/web": want GROUP/VERSION/...`},
		{set: map[string]any{"protoPayload.resourceName": "core/v1/namespaces/default/"}, want: "names no resource"},
		{set: map[string]any{"protoPayload.status": "OK"}, want: "protoPayload.status: got a JSON string, want an object"},
		{set: map[string]any{"operation": deleted, "insertId": deleted}, want: "operation.id and insertId: both missing"},
		{set: map[string]any{"timestamp": "yesterday"}, want: `timestamp: "yesterday" is not an RFC 3339 time`},
		{set: map[string]any{"protoPayload.serviceName": "compute.googleapis.com", "protoPayload.methodName": "v1.compute.instances.insert",
			"operation": deleted}, want: `protoPayload.serviceName "compute.googleapis.com" is not the Kubernetes API`, notK8s: true},
	}
	for _, tc := range cases {
		b, err := Decode(patch(t, gkeEntry, tc.set))
		if err != nil {
			t.Errorf("%v: the record as a whole failed: %v", tc.set, err)
			continue
		}
		if b.Format != FormatGKE || len(b.Items) != 1 || b.Items[0].Err == nil {
			t.Errorf("%v: got %s with %d items, want one GKE item with an error", tc.set, b.Format, len(b.Items))
			continue
		}
		err = b.Items[0].ItemError()
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q, want it to say %q", tc.set, err, tc.want)
		}
		if errors.Is(err, ErrNotAudit) != tc.notK8s {
			t.Errorf("%v: errors.Is(%v, ErrNotAudit) = %v, want %v", tc.set, err, !tc.notK8s, tc.notK8s)
		}
	}
}

func TestHTTPStatusOfRPCFollowsCodeProto(t *testing.T) {
	for rpc, http := range map[int64]int64{0: 200, 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 10: 409, 14: 503, 16: 401, 99: 500} {
		if got := HTTPStatusOfRPC(rpc); got != http {
			t.Errorf("HTTPStatusOfRPC(%d) = %d, want %d", rpc, got, http)
		}
	}
}

// How the apiserver's answers read once through GKE, and what the
// coverage's projection of responseStatus.code relies on.
func TestGKEResponseCode(t *testing.T) {
	for code, want := range map[int64]int64{101: 200, 200: 200, 201: 200, 400: 400, 401: 401, 403: 403, 404: 404,
		409: 409, 422: 400, 429: 429, 500: 500, 502: 500, 503: 503, 504: 504} {
		if got := GKEResponseCode(code); got != want {
			t.Errorf("GKEResponseCode(%d) = %d, want %d", code, got, want)
		}
		ev := decodeGKE(t, patch(t, gkeEntry, map[string]any{"protoPayload.response": deleted,
			"protoPayload.status": map[string]any{"code": rpcOfHTTP(code)}}))
		if ev.ResponseCode() != want {
			t.Errorf("an answer %d converts to %d, want %d", code, ev.ResponseCode(), want)
		}
	}
}
