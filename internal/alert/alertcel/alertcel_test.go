package alertcel

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

func sample() *alert.Alert {
	return &alert.Alert{
		ID: "privileged-container/a1", Rule: "privileged-container", Severity: "high", Tags: []string{"pod"},
		User: "system:serviceaccount:kube-system:daemon-set-controller", Namespace: "kube-system", Name: "cilium-x",
		Verb: "create", Resource: "pods", Time: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC),
		SourceIPs: []string{"10.0.0.1"}, ResponseCode: 201, Count: 1,
	}
}

func TestEval(t *testing.T) {
	a := sample()
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`alert.namespace == "kube-system" && alert.user.endsWith(":daemon-set-controller")`, true},
		{`alert.namespace.startsWith("team-a-")`, false},
		{`"pod" in alert.tags && alert.responseCode == 201 && alert.sourceIPs[0] == "10.0.0.1"`, true},
		{`alert.time < timestamp("2026-03-05T00:00:00Z")`, true},
		{`alert.resource in ["clusterroles", "clusterrolebindings"]`, false},
		{`alert.name.lowerAscii().contains("cilium")`, true},
	} {
		p, err := Compile(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		got, err := p.Eval(a)
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.src, got, err, tc.want)
		}
	}
}

func TestEvalError(t *testing.T) {
	p, err := Compile(`alert.sourceIPs[3] == "x"`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Eval(sample()); got || err == nil {
		t.Errorf("Eval = %v, %v; want false and the index error", got, err)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []Issue
	}{
		{"unknown field", `alert.usr == "bob"`, []Issue{{1, 6, `unknown field "usr" of alert, did you mean "user"?`}}},
		{"unknown field on line 2", "alert.user == \"bob\" &&\n  alert.namespce == \"x\"", []Issue{{2, 8, `unknown field "namespce" of alert, did you mean "namespace"?`}}},
		{"not boolean", `alert.user`, []Issue{{0, 0, "must be a boolean expression, but this one gives string"}}},
		{"too long", strings.Repeat(" ", MaxLength) + "true", []Issue{{0, 0, "is longer than 4096 bytes"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.src)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want an *Error", err)
			}
			if !slices.Equal(e.Issues, tc.want) {
				t.Errorf("issues %+v, want %+v", e.Issues, tc.want)
			}
		})
	}
	_, err := Compile(`alert.count == "1"`)
	if err == nil || !strings.Contains(err.Error(), "1:13: found no matching overload for '_==_'") {
		t.Errorf("type error: %v", err)
	}
	_, err = Compile(`alert.user ==`)
	if err == nil || !strings.HasPrefix(err.Error(), "1:") {
		t.Errorf("syntax error: %v, want a position", err)
	}
}

// laterAlert stands for alert.Alert once fields are added to it, nested
// structs included: conditions see them without a change to the
// environment.
type laterAlert struct {
	User          string   `json:"user"`
	UserGroups    []string `json:"userGroups,omitempty"`
	WindowSeconds int      `json:"windowSeconds,omitempty"`
	Members       []member `json:"members,omitempty"`
}

type member struct {
	User string `json:"user"`
	Verb string `json:"verb"`
}

func TestFieldsComeFromTheStruct(t *testing.T) {
	typ := reflect.TypeFor[laterAlert]()
	src := `"system:masters" in alert.userGroups && alert.windowSeconds == 60 && alert.members.exists(m, m.verb == "delete")`
	p, err := compile(typ, src)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := p.prg.Eval(map[string]any{Variable: &laterAlert{
		UserGroups: []string{"system:masters"}, WindowSeconds: 60,
		Members: []member{{User: "bob", Verb: "get"}, {User: "bob", Verb: "delete"}},
	}})
	if err != nil || out.Value() != true {
		t.Errorf("%s = %v, %v; want true", src, out, err)
	}
	if got := fields(typ); !slices.Equal(got, []string{"user", "userGroups", "windowSeconds", "members"}) {
		t.Errorf("fields %v", got)
	}
	if _, err := compile(typ, `alert.memebrs.size() > 0`); err == nil || !strings.Contains(err.Error(), `did you mean "members"?`) {
		t.Errorf("misspelt new field: %v", err)
	}
	// And the real alert: every field of alert.Alert is offered.
	if got, want := len(Fields()), reflect.TypeFor[alert.Alert]().NumField(); got != want {
		t.Errorf("Fields has %d names, alert.Alert %d fields", got, want)
	}
}
