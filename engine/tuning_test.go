package engine

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/rules"
)

// tuning is an operator's file in the forms docs/rules.md teaches.
const tuning = `overrides:
  - rule: secret-read-by-non-node
    exceptions: [{name: ingress, when: 'event.user.username.startsWith("system:serviceaccount:ingress-nginx:")'}]
    severity: medium
  - rule: namespace-created
    enabled: false
  - rule: impersonation-used
    exceptions:
      - name: admin-tooling
        when: event.user.username == "system:admin"
  - rule: configmap-with-credentials
    severity: low
  - list: control_plane
    append: ["system:serviceaccount:tools:backup"]
`

// corpusFiles are every audit log of the shared corpus.
func corpusFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, glob := range []string{"*/*.json", "*/*.log", "*/*.jsonl"} {
		m, err := filepath.Glob(filepath.Join("../../shared/corpus", glob))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 50 {
		t.Fatalf("found %d corpus files; the shared corpus must sit beside the repository", len(files))
	}
	return files
}

func replayAlerts(t *testing.T, set *rules.Set, files []string) map[string]*alert.Alert {
	t.Helper()
	out := map[string]*alert.Alert{}
	_, err := Replay(context.Background(), set, files, ReplayOptions{OnAlert: func(a *alert.Alert) error {
		out[a.ID] = a
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTuningChangesExactlyTheAlertsItNames(t *testing.T) {
	files := append(corpusFiles(t), gunzipped(t, realClusterLog))
	before := replayAlerts(t, defaultSet(t), files)
	path := filepath.Join(t.TempDir(), "tuning.yaml")
	if err := os.WriteFile(path, []byte(tuning), 0o600); err != nil {
		t.Fatal(err)
	}
	tuned, err := rules.Load(rules.LoadOptions{Paths: []string{path}, Default: true})
	if err != nil {
		t.Fatal(err)
	}
	after := replayAlerts(t, tuned, files)

	var dropped, relabelled int
	for id, a := range before {
		want := *a
		gone := false
		switch {
		case a.Rule == "namespace-created":
			gone = true
		case a.Rule == "impersonation-used" && a.User == "system:admin":
			gone = true
		case a.Rule == "configmap-with-credentials":
			want.Severity = alert.SeverityLow
			relabelled++
		case a.Rule == "secret-read-by-non-node":
			want.Severity = alert.SeverityMedium
			relabelled++
		}
		got, ok := after[id]
		switch {
		case gone && ok:
			t.Errorf("%s: still alerts after tuning", id)
		case gone:
			dropped++
		case !ok:
			t.Errorf("%s (%s): lost by tuning that does not name it", id, a.Output)
		case !reflect.DeepEqual(*got, want):
			t.Errorf("%s: after tuning\n  %+v\nwant\n  %+v", id, *got, want)
		}
	}
	for id := range after {
		if before[id] == nil {
			t.Errorf("%s: raised only after tuning", id)
		}
	}
	// The corpus has what each override names, so the test cannot pass
	// by changing nothing.
	if dropped < 6 || relabelled < 20 {
		t.Errorf("tuning dropped %d and relabelled %d alerts of the logs, want at least 6 and 20", dropped, relabelled)
	}
}
