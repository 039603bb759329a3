package silence

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func testAlert() *alert.Alert {
	return &alert.Alert{
		ID: "privileged-container/a1", Rule: "privileged-container", Severity: "high", Tags: []string{"pod"},
		User: "system:serviceaccount:kube-system:daemon-set-controller", Namespace: "kube-system", Name: "cilium-x",
		Verb: "create", Resource: "pods", Time: t0, SourceIPs: []string{"10.0.0.1"}, ResponseCode: 201, Count: 1,
	}
}

func mustNew(t *testing.T, spec Spec) *Matcher {
	t.Helper()
	if spec.For == 0 {
		spec.For = time.Hour
	}
	if spec.Comment == "" {
		spec.Comment = "CNI upgrade"
	}
	if spec.Author == "" {
		spec.Author = "alice"
	}
	s, err := New(spec, t0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMatcher(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMatcher(t *testing.T) {
	a := testAlert()
	for _, tc := range []struct {
		name string
		spec Spec
		at   time.Time
		want bool
	}{
		{"rule", Spec{Rule: "privileged-container"}, t0.Add(time.Minute), true},
		{"other rule", Spec{Rule: "secret-read-by-non-node"}, t0.Add(time.Minute), false},
		{"when on strings", Spec{When: `alert.namespace == "kube-system" && alert.user.endsWith(":daemon-set-controller")`}, t0.Add(time.Minute), true},
		{"when false", Spec{When: `alert.namespace == "default"`}, t0.Add(time.Minute), false},
		{"rule and when", Spec{Rule: "privileged-container", When: `alert.name.startsWith("cilium-")`}, t0.Add(time.Minute), true},
		{"rule holds, when does not", Spec{Rule: "privileged-container", When: `alert.severity == "critical"`}, t0.Add(time.Minute), false},
		{"lists and numbers", Spec{When: `"pod" in alert.tags && alert.responseCode == 201 && alert.sourceIPs[0] == "10.0.0.1"`}, t0.Add(time.Minute), true},
		{"time", Spec{When: `alert.time < timestamp("2026-03-05T00:00:00Z")`}, t0.Add(time.Minute), true},
		{"before it starts", Spec{Rule: "privileged-container"}, t0.Add(-time.Second), false},
		{"at its end", Spec{Rule: "privileged-container", For: time.Hour}, t0.Add(time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustNew(t, tc.spec)
			got, err := m.Matches(a, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMatcherExpired(t *testing.T) {
	m := mustNew(t, Spec{Rule: "privileged-container"})
	at := t0.Add(10 * time.Minute)
	m.ExpiredAt = &at
	if got, _ := m.Matches(testAlert(), at.Add(-time.Second)); !got {
		t.Error("does not match before it was expired")
	}
	if got, _ := m.Matches(testAlert(), at); got {
		t.Error("matches once expired")
	}
	if s := m.State(at); s != "expired" {
		t.Errorf("state %q, want expired", s)
	}
}

// A condition that fails on an alert does not silence it.
func TestMatcherEvalError(t *testing.T) {
	m := mustNew(t, Spec{When: `alert.sourceIPs[3] == "x"`})
	got, err := m.Matches(testAlert(), t0.Add(time.Minute))
	if got || err == nil || !strings.Contains(err.Error(), "silence "+m.ID) {
		t.Errorf("Matches = %v, %v; want false and an error naming the silence", got, err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"nothing to match", Spec{For: time.Hour, Comment: "x", Author: "a"}, "needs --rule, --when or both"},
		{"bad rule id", Spec{Rule: "Privileged_Container", For: time.Hour, Comment: "x", Author: "a"}, `--rule "Privileged_Container" is not a rule id`},
		{"unknown field", Spec{When: `alert.usr == "bob"`, For: time.Hour, Comment: "x", Author: "a"}, `--when: 1:7: unknown field "usr" of alert, did you mean "user"?`},
		{"not boolean", Spec{When: `alert.user`, For: time.Hour, Comment: "x", Author: "a"}, "--when must be a boolean expression, but this one gives string"},
		{"type error", Spec{When: `alert.count == "1"`, For: time.Hour, Comment: "x", Author: "a"}, "--when: 1:13: found no matching overload for '_==_'"},
		{"syntax", Spec{When: `alert.user ==`, For: time.Hour, Comment: "x", Author: "a"}, "--when: 1:"},
		{"no duration", Spec{Rule: "r", Comment: "x", Author: "a"}, "--for must be a positive duration"},
		{"too long", Spec{Rule: "r", For: 31 * 24 * time.Hour, Comment: "x", Author: "a"}, "--for 744h0m0s is longer than 30 days (720h)"},
		{"no comment", Spec{Rule: "r", For: time.Hour, Author: "a"}, "--comment is required"},
		{"no author", Spec{Rule: "r", For: time.Hour, Comment: "x"}, "--author is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.spec, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewSilence(t *testing.T) {
	s, err := New(Spec{Rule: "privileged-container", For: 2 * time.Hour, Comment: "CNI upgrade", Author: "alice"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(s.ID) || s.CreatedAt != t0 || s.EndsAt != t0.Add(2*time.Hour) || s.CreatedBy != "alice" {
		t.Errorf("silence %+v", s)
	}
	if ValidID("nope") || ValidID(strings.Repeat("z", 16)) {
		t.Error("ValidID accepts a malformed id")
	}
}
