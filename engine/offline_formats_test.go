package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
)

// execEvent is an apiserver event of alice exec'ing into a pod: one
// alert (pod-exec-or-attach) per auditID.
func execEvent(id string) string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/default/pods/web/exec?command=sh","verb":"create","user":{"username":"alice"},` +
		`"objectRef":{"resource":"pods","subresource":"exec","namespace":"default","name":"web"},"responseStatus":{"code":101}}`
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// gkeExec is a GKE entry of the same kind of request.
func gkeExec(id string) string {
	return `{"insertId":"` + id + `","operation":{"id":"` + id + `","producer":"k8s.io"},"timestamp":"2026-03-04T10:00:00Z",` +
		`"protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.exec.create",` +
		`"resourceName":"core/v1/namespaces/default/pods/web/exec","authenticationInfo":{"principalEmail":"alice@example.com"},` +
		`"requestMetadata":{"callerIp":"203.0.113.7"},"status":{}}}`
}

type replayed struct {
	alerts    []string
	malformed []string
	st        ReplayStats
}

func replayFile(t *testing.T, content string) replayed {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.log")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var out replayed
	st, err := Replay(context.Background(), defaultSet(t), []string{path}, ReplayOptions{
		OnAlert: func(a *alert.Alert) error { out.alerts = append(out.alerts, a.ID); return nil },
		OnMalformed: func(file string, line int, err error) {
			kind := "bad"
			switch {
			case errors.Is(err, provider.ErrTruncated):
				kind = "truncated"
			case errors.Is(err, provider.ErrNotAudit):
				kind = "not-audit"
			}
			out.malformed = append(out.malformed, fmt.Sprintf("%d %s: %v", line, kind, err))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	out.st = st
	return out
}

func (r replayed) check(t *testing.T, alerts []string, malformed []string, formats map[provider.Format]int) {
	t.Helper()
	if !slices.Equal(r.alerts, alerts) {
		t.Errorf("alerts %v\n  want %v", r.alerts, alerts)
	}
	if len(r.malformed) != len(malformed) {
		t.Errorf("skipped %q\n   want %q", r.malformed, malformed)
	} else {
		for i, m := range malformed {
			if !strings.HasPrefix(r.malformed[i], m) {
				t.Errorf("skipped %q, want it to start %q", r.malformed[i], m)
			}
		}
	}
	if !reflect.DeepEqual(r.st.Formats, formats) {
		t.Errorf("events by format %v, want %v", r.st.Formats, formats)
	}
}

// A file mixing every format, one record a line, as a team concatenating
// its clouds' exports gets: each line is told apart on its own.
func TestReplayReadsEveryFormatLineByLine(t *testing.T) {
	lines := []string{
		execEvent("raw-1"),
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + execEvent("list-1") + `,` + execEvent("list-2") + `]}`,
		gkeExec("gke-1"),
		`{"category":"kube-audit","properties":{"log":` + jsonString(execEvent("aks-1")) + `}}`,
		`{"records":[{"category":"kube-audit-admin","properties":{"log":` + jsonString(execEvent("aks-2")) + `}},` +
			`{"category":"cluster-autoscaler","properties":{"log":"scale up"}}]}`,
		`{"events":[{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":` + jsonString(execEvent("cw-1")) + `}],"searchedLogStreams":[]}`,
		"2026-03-04T10:00:00.000Z " + execEvent("s3-1"),
		"2026-03-04T10:00:01.000Z " + execEvent("s3-2")[:150] + "[Truncated...]",
		`{"insertId":"x","protoPayload":{"serviceName":"compute.googleapis.com","methodName":"v1.compute.instances.insert"}}`,
		"",
		"I0304 10:00:00.000000 1 main.go:12] not an audit record",
		`{"auditID":"no-stage","verb":"get"}`,
	}
	r := replayFile(t, strings.Join(lines, "\n")+"\n")
	var alerts []string
	for _, id := range []string{"raw-1", "list-1", "list-2", "gke-1", "aks-1", "aks-2", "cw-1", "s3-1"} {
		alerts = append(alerts, "pod-exec-or-attach/"+id)
	}
	r.check(t, alerts, []string{
		"5 not-audit: records[1]: not a Kubernetes audit record: category \"cluster-autoscaler\"",
		"8 truncated: cut short by the provider: event s3-2 ends with [Truncated...]",
		"9 not-audit: not a Kubernetes audit record: protoPayload.serviceName \"compute.googleapis.com\"",
		"11 bad: malformed audit event: invalid character 'I'",
		"12 bad: audit event has no stage",
	}, map[provider.Format]int{provider.FormatEvent: 1, provider.FormatEventList: 2, provider.FormatGKE: 1,
		provider.FormatAKS: 2, provider.FormatCloudWatch: 2})
	if r.st.Events != 8 || r.st.Malformed != 3 || r.st.NotAudit != 2 {
		t.Errorf("events %d, malformed %d, not audit %d; want 8, 3, 2", r.st.Events, r.st.Malformed, r.st.NotAudit)
	}
}

// What `aws logs filter-log-events` prints: one JSON document over many
// lines. A part that is no event is reported at its own line.
func TestReplayReadsADocumentSpanningLines(t *testing.T) {
	out, err := json.MarshalIndent(map[string]any{
		"events": []map[string]any{
			{"logStreamName": "kube-apiserver-audit-1", "timestamp": 1, "message": execEvent("cw-1"), "eventId": "1"},
			{"logStreamName": "kube-apiserver-audit-1", "timestamp": 2, "message": execEvent("cw-2")[:200] + "[Truncated...]", "eventId": "2"},
			{"logStreamName": "kube-apiserver-audit-1", "timestamp": 3, "message": execEvent("cw-3"), "eventId": "3"},
		},
		"searchedLogStreams": []any{},
	}, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	// Reported at the line of the message that was cut.
	before, _, ok := strings.Cut(doc, `"message": "{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"cw-2`)
	if !ok {
		t.Fatalf("no cut message in\n%s", doc)
	}
	line := 1 + strings.Count(before, "\n")
	r := replayFile(t, doc+"\n")
	r.check(t, []string{"pod-exec-or-attach/cw-1", "pod-exec-or-attach/cw-3"},
		[]string{fmt.Sprintf("%d truncated: events[1].message: cut short by the provider: event cw-2", line)},
		map[provider.Format]int{provider.FormatCloudWatch: 2})
}

// What `gcloud logging read --format=json` prints, twice over (documents
// follow one another as jq . prints them), and a document that breaks
// off: what was read is kept, the break reported where it is.
func TestReplayReadsDocumentsOneAfterAnother(t *testing.T) {
	var entries []any
	for _, id := range []string{"gke-1", "gke-2"} {
		var e any
		if err := json.Unmarshal([]byte(gkeExec(id)), &e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	first, _ := json.MarshalIndent(entries, "", "  ")
	second, _ := json.MarshalIndent(entries[:1], "", "  ")
	content := string(first) + "\n" + strings.ReplaceAll(string(second), "gke-1", "gke-3") + "\n{\n  \"records\": [\n    {,\n"
	r := replayFile(t, content)
	brokenAt := strings.Count(content, "\n") // the last line, "{,"
	r.check(t, []string{"pod-exec-or-attach/gke-1", "pod-exec-or-attach/gke-2", "pod-exec-or-attach/gke-3"},
		[]string{fmt.Sprintf("%d bad: malformed JSON document, the rest of the file is skipped", brokenAt)},
		map[provider.Format]int{provider.FormatGKE: 3})
}
