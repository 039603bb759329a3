package app_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/logtest"
)

// withAnnotations adds audit annotations to an event line.
func withAnnotations(t *testing.T, line string, ann map[string]string) string {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatal(err)
	}
	ev["annotations"] = ann
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitForRule waits for the sink to hold an alert of rule and returns it.
func (s *sink) waitForRule(t *testing.T, rule string) alert.Alert {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, a := range s.alerts {
			if a.Rule == rule {
				s.mu.Unlock()
				return a
			}
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s alert delivered within 30s; got %v", rule, s.snapshot())
	return alert.Alert{}
}

// TestWebhookGetsTheAlertContext runs the whole pipeline and checks what a
// responder reads in a webhook body: for a Secret read, why it matters,
// the pack's runbook, the groups and the binding that allowed it; for a burst of
// denied requests, the count, the window in seconds and who did what.
func TestWebhookGetsTheAlertContext(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	s := newSink(t)
	r := start(t, testConfig(t, dir, logPath, s.srv.URL), &logtest.Buffer{})
	defer r.stop(t)

	const reason = `RBAC: allowed by RoleBinding "app-reader/default" of Role "secret-reader" to ServiceAccount "app/default"`
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}
	lines := []string{withAnnotations(t,
		event("ctx-1", "ResponseComplete", "system:serviceaccount:default:app", groups, "get", "secrets", "default", "db", 200),
		map[string]string{alert.AnnotationDecision: "allow", alert.AnnotationReason: reason})}
	// forbidden-burst: 20 denied requests by one identity within 5m.
	for i := range 20 {
		lines = append(lines, event(fmt.Sprintf("deny-%02d", i), "ResponseComplete", "mallory", []string{"system:authenticated"},
			"delete", "deployments", "default", fmt.Sprintf("web-%02d", i), 403))
	}
	appendLines(t, logPath, lines...)

	s.waitFor(t, "secret-read-by-non-node/ctx-1")
	s.mu.Lock()
	a := s.alerts["secret-read-by-non-node/ctx-1"]
	s.mu.Unlock()
	if a.Description == "" || a.RunbookURL != "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets-secretsyaml" ||
		!slices.Equal(a.UserGroups, groups) || a.AuthorizationDecision != "allow" || a.AuthorizationReason != reason {
		t.Errorf("secret-read-by-non-node alert: description %q runbookURL %q userGroups %v authorization %q %q",
			a.Description, a.RunbookURL, a.UserGroups, a.AuthorizationDecision, a.AuthorizationReason)
	}

	b := s.waitForRule(t, "forbidden-burst")
	if b.Count != 20 || b.WindowSeconds != 300 || len(b.Members) != alert.MaxMembers {
		t.Fatalf("forbidden-burst alert: count %d windowSeconds %d, %d members; want 20, 300, %d", b.Count, b.WindowSeconds, len(b.Members), alert.MaxMembers)
	}
	// The requests share one time: the latest ten by time, then auditID.
	for i, m := range b.Members {
		want := alert.Member{AuditID: fmt.Sprintf("deny-%02d", 10+i), Time: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC),
			User: "mallory", Verb: "delete", Resource: "deployments", Namespace: "default", Name: fmt.Sprintf("web-%02d", 10+i)}
		if m != want {
			t.Errorf("member %d = %+v, want %+v", i, m, want)
		}
	}
}
