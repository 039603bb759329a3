package rules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// FuzzLoad feeds arbitrary rule files to the loader: it must never panic,
// every rejection must be a located *Problems, and a set it accepts must
// evaluate without panicking.
func FuzzLoad(f *testing.F) {
	// Small seeds keep executions fast; the default pack is compiled by
	// its own tests.
	f.Add([]byte("lists:\n  node_groups: [\"system:nodes\"]\nmacros:\n  node: event.user.groups.exists(g, g in lists.node_groups)\nrules:\n  - id: secret-read\n    severity: high\n    tags: [a]\n    stages: [ResponseComplete]\n    condition: >\n      event.objectRef.resource == \"secrets\" && !macros.node\ntests:\n  - name: n\n    rule: secret-read\n    match: true\n    event: {verb: get, objectRef: {resource: secrets}}\n"))
	f.Add([]byte("rules:\n  - id: p\n    severity: high\n    condition: |\n      cel.bind(o, event.requestObject, o.?spec.?containers.orValue([]).exists(c, c.?securityContext.?privileged.orValue(false) == true))\n"))
	f.Add([]byte("rules:\n  - id: r\n    severity: low\n    condition: >\n      event.verb == \"get\" &&\n      event.objectRef.resourse == \"pods\"\n"))
	f.Add([]byte("macros:\n  a: macros.b\n  b: macros.a\nrules: []\n"))
	f.Add([]byte("rules:\n  - id: t\n    severity: low\n    condition: \"true\"\n    threshold: {count: 2, window: 1m, by: [event.verb], distinct: event.user.username}\n"))
	f.Add([]byte("lists: {a: [x, y]}\nrules: [{id: x, severity: info, condition: 'event.verb in lists.a', output: '\"%s\".format([event.verb])'}]\n"))
	ev := &audit.Event{AuditID: "a", Stage: audit.StageResponseComplete, Verb: "get",
		User:          audit.UserInfo{Username: "u", Groups: []string{"g"}},
		ObjectRef:     &audit.ObjectReference{Resource: "pods", Namespace: "n", Name: "p"},
		RequestObject: []byte(`{"kind":"Pod","spec":{"containers":[{"name":"a","securityContext":{"privileged":true}}]}}`),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Compile([]File{{Name: "f.yaml", Data: data}})
		if err != nil {
			var ps *Problems
			if !errors.As(err, &ps) || len(ps.List) == 0 {
				t.Fatalf("rejection is not a list of problems: %v", err)
			}
			for _, p := range ps.List {
				if p.File != "f.yaml" || strings.TrimSpace(p.Message) == "" {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			return
		}
		if _, err := set.Eval(context.Background(), ev); err != nil {
			var ee *EvalErrors
			if !errors.As(err, &ee) {
				t.Fatalf("eval: %v", err)
			}
		}
		if _, err := set.RunTests(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
