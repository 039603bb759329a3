package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestTextLine(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(&buf)
	if err != nil {
		t.Fatal(err)
	}
	a := alerttest.Sample()
	b := alerttest.Sample()
	b.ImpersonatedUser, b.Resource, b.Subresource, b.Namespace, b.Name = "system:admin", "nodes", "proxy", "", "node-1"
	b.Count, b.Window = 20, "5m0s"
	c := alerttest.Sample()
	c.Suppressed = 11
	if _, err := n.Notify(context.Background(), a, b, c); err != nil {
		t.Fatal(err)
	}
	// The output names the user, verb and object; the line does not say
	// them again.
	want := "2024-02-19T01:13:32Z high     secret-read-by-non-node: system:serviceaccount:default:app get secrets default/db\n" +
		"    auditID: 3f9e34f0-52e8-44bc-88fb-10ae742d2a0a\n" +
		"2024-02-19T01:13:32Z high     secret-read-by-non-node: system:serviceaccount:default:app get secrets default/db x20 in 5m0s\n" +
		"    as system:admin\n" +
		"    auditID: 3f9e34f0-52e8-44bc-88fb-10ae742d2a0a\n" +
		"2024-02-19T01:13:32Z high     secret-read-by-non-node: system:serviceaccount:default:app get secrets default/db (+11 held back before)\n" +
		"    auditID: 3f9e34f0-52e8-44bc-88fb-10ae742d2a0a\n"
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A value with a newline or an escape sequence must not start a second
// line or drive the terminal.
func TestTextEscapesControlCharacters(t *testing.T) {
	var buf bytes.Buffer
	n, _ := New(&buf)
	a := alerttest.Sample()
	a.Output = "ok\n2024-01-01T00:00:00Z critical forged: \x1b[2Jcleared\u2028"
	a.ImpersonatedUser = "bad\xffutf8\r"
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// The alert's line, then its impersonation and audit ID, indented.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(out, "\n") || !strings.HasPrefix(lines[1], "    ") || !strings.HasPrefix(lines[2], "    ") {
		t.Errorf("one alert became %d lines: %q", len(lines), out)
	}
	if strings.ContainsAny(strings.Join(lines, ""), "\n\r\x1b\u2028") {
		t.Errorf("control characters left in %q", out)
	}
	for _, want := range []string{`ok\n2024`, `\x1b[2J`, `\u2028`, `bad\xffutf8\r`} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks escaped %q", out, want)
		}
	}
}

func TestColorOnlyWhenAsked(t *testing.T) {
	var plain, colored bytes.Buffer
	p, _ := New(&plain) // a buffer is not a terminal
	c, _ := New(&colored, WithColor(true))
	a := alerttest.Sample()
	a.Severity = alert.SeverityCritical
	_, _ = p.Notify(context.Background(), a)
	_, _ = c.Notify(context.Background(), a)
	if strings.Contains(plain.String(), "\x1b[") {
		t.Errorf("colour written to a non-terminal: %q", plain.String())
	}
	if !strings.Contains(colored.String(), "\x1b[1;35mcritical") {
		t.Errorf("no severity colour: %q", colored.String())
	}
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(&buf, WithFormat(FormatJSON))
	if err != nil {
		t.Fatal(err)
	}
	in := alerttest.Many(3)
	in[1].Output = "line\nbreak"
	if _, err := n.Notify(context.Background(), in...); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 3 alerts: %q", len(lines), buf.String())
	}
	for i, l := range lines {
		var a alert.Alert
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if a.ID != in[i].ID || a.Output != in[i].Output {
			t.Errorf("line %d: got %s %q", i, a.ID, a.Output)
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, WithFormat("yaml")); err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Errorf("got %v, want an error naming the format", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errFull }

var errFull = errors.New("disk full")

func TestWriteErrorIsRetryable(t *testing.T) {
	n, _ := New(failingWriter{})
	retry, err := n.Notify(context.Background(), alerttest.Sample())
	if err == nil || !retry {
		t.Errorf("got retry=%v err=%v, want a retryable error", retry, err)
	}
}

// The context of an alert follows its line, indented, every value
// escaped: a description or a member cannot start a line of its own.
func TestTextContextLines(t *testing.T) {
	var buf bytes.Buffer
	n, _ := New(&buf)
	a := alerttest.Sample()
	a.Description = "Secrets read by a workload.\n2024-01-01T00:00:00Z critical forged: x"
	a.RunbookURL = "https://wiki.example.com/runbooks/secret-read"
	a.UserGroups = []string{"system:serviceaccounts", "system:authenticated"}
	a.ImpersonatedUser, a.ImpersonatedGroups = "system:admin", []string{"system:masters"}
	a.AuthorizationDecision, a.AuthorizationReason = "allow", `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "cluster-admin" to User "alice"`
	a.Count, a.Window = 2, "1m0s"
	a.Members = []alert.Member{
		{AuditID: "1", Time: alerttest.Time, User: "alice", Verb: "delete", Resource: "namespaces", Name: "foo"},
		{AuditID: "2", Time: alerttest.Time.Add(time.Second), User: "alice", Verb: "get", Resource: "pods", Subresource: "log", Namespace: "n", Name: "p\x1b[2J"},
	}
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	want := "2024-02-19T01:13:32Z high     secret-read-by-non-node: system:serviceaccount:default:app get secrets default/db x2 in 1m0s\n" +
		`    Secrets read by a workload.\n2024-01-01T00:00:00Z critical forged: x` + "\n" +
		"    runbook: https://wiki.example.com/runbooks/secret-read\n" +
		"    groups: system:serviceaccounts, system:authenticated\n" +
		"    as system:admin in groups: system:masters\n" +
		`    authorization: allow RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "cluster-admin" to User "alice"` + "\n" +
		"    auditID: 3f9e34f0-52e8-44bc-88fb-10ae742d2a0a\n" +
		"    member: 2024-02-19T01:13:32Z alice delete namespaces foo\n" +
		`    member: 2024-02-19T01:13:33Z alice get pods/log n/p\x1b[2J` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
