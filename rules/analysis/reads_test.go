package analysis

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
)

func unguarded(t *testing.T, src string) []string {
	t.Helper()
	env, err := cel.NewEnv(cel.OptionalTypes(), ext.Bindings())
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Parse(src)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", src, iss.Err())
	}
	var out []string
	for _, r := range UnguardedReads(ast) {
		out = append(out, fmt.Sprintf("%d:%d %s -> %s", r.Line, r.Col, r.Path, r.Optional))
	}
	return out
}

func TestUnguardedReadsOfBodiesAndMaps(t *testing.T) {
	for src, want := range map[string]string{
		`event.requestObject.spec.hostNetwork == true`:                       `1:0 event.requestObject.spec.hostNetwork -> event.requestObject.?spec.?hostNetwork`,
		`event.verb == "create" && event.responseObject.status.phase == "x"`: `1:26 event.responseObject.status.phase -> event.responseObject.?status.?phase`,
		`event.annotations["authorization.k8s.io/decision"] == "allow"`:      `1:0 event.annotations["authorization.k8s.io/decision"] -> event.annotations[?"authorization.k8s.io/decision"]`,
		`event.user.extra["scopes"].size() > 0`:                              `1:0 event.user.extra["scopes"] -> event.user.extra[?"scopes"]`,
		// has() guards what it tests, in any operand of &&, and its own
		// operand is a read.
		`has(event.requestObject.spec) && event.requestObject.spec.hostNetwork`:                                                 `1:33 event.requestObject.spec.hostNetwork -> event.requestObject.spec.?hostNetwork`,
		`event.requestObject.spec.tls.size() == 0 && has(event.requestObject.spec.tls)`:                                         `1:48 event.requestObject.spec -> event.requestObject.?spec`,
		`has(event.requestObject.spec.tls) && has(event.requestObject.spec) && event.requestObject.spec.tls.size() == 0`:        ``,
		`!has(event.requestObject.spec) || event.requestObject.spec.x == 1`:                                                     `1:34 event.requestObject.spec.x -> event.requestObject.spec.?x`,
		`has(event.requestObject.spec) ? event.requestObject.spec.paused : false`:                                               `1:32 event.requestObject.spec.paused -> event.requestObject.spec.?paused`,
		`"authorization.k8s.io/decision" in event.annotations && event.annotations["authorization.k8s.io/decision"] == "allow"`: ``,
		// Optional syntax cannot error, and nor can what follows it.
		`event.requestObject.?spec.?hostNetwork.orValue(false)`: ``,
		`event.requestObject.?spec.hostNetwork.orValue(false)`:  ``,
		`event.annotations[?"k"].orValue("") == ""`:             ``,
		`event.requestObject.?spec.orValue({}).hostNetwork`:     `1:0 event.requestObject.?spec.orValue({}).hostNetwork -> event.requestObject.?spec.orValue({}).?hostNetwork`,
		// Inside a comprehension over a value, the value is there.
		`event.requestObject.?data.orValue({}).exists(k, string(event.requestObject.data[k]).contains("x"))`:  ``,
		`event.requestObject.?spec.?containers.orValue([]).exists(c, c.securityContext.privileged)`:           `1:60 c.securityContext.privileged -> c.?securityContext.?privileged`,
		`cel.bind(o, event.requestObject, o.?spec.orValue({}).exists(s, s == "x") || o.metadata.name == "x")`: `1:76 o.metadata.name -> o.?metadata.?name`,
		`cel.bind(o, event.requestObject, [o.?spec.orValue({})].exists(s, s.hostPID))`:                        `1:65 s.hostPID -> s.?hostPID`,
		`cel.bind(o, event.requestObject, has(o.spec) && o.spec.hostPID)`:                                     `1:48 o.spec.hostPID -> o.spec.?hostPID`,
		`cel.bind(o, event.requestObject, has(o.spec.hostPID) && o.spec.hostPID)`:                             `1:37 o.spec -> o.?spec`,
		`cel.bind(o, event.requestObject, has(o.spec) && has(o.spec.hostPID) && o.spec.hostPID)`:              ``,
		// The event's own fields read as zero values when absent.
		`event.objectRef.name == "" && event.user.groups.exists(g, g == "x") && event.impersonatedUser.username == ""`: ``,
	} {
		got := strings.Join(unguarded(t, src), "\n")
		if got != want {
			t.Errorf("%s\n got %q\nwant %q", src, got, want)
		}
	}
}
