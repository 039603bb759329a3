package provider

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
)

func source(t *testing.T, name string) Source {
	t.Helper()
	for _, s := range Sources() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no source %s", name)
	return Source{}
}

// carriage is what src says of path: of it or of a value it is part of.
func carriage(src Source, path string) (Carriage, bool) {
	for _, f := range src.Fields {
		if f.Path == path || strings.HasPrefix(path, f.Path+".") {
			return f.Carriage, true
		}
	}
	return "", false
}

// What Sources says GKE leaves out is what the conversion leaves out: from
// an entry that has everything a LogEntry can hold, every value the table
// does not call absent is set, and none it calls absent is.
func TestGKESourceSaysWhatTheConversionCarries(t *testing.T) {
	ev := decodeGKE(t, patch(t, gkeEntry, map[string]any{
		"protoPayload.resourceName": "apps/v1/namespaces/default/deployments/web/scale",
		"protoPayload.methodName":   "io.k8s.apps.v1.deployments.scale.update",
		"protoPayload.status":       map[string]any{"code": 6, "message": "exists"},
		"protoPayload.response": map[string]any{"@type": "core.k8s.io/v1.Status", "status": "Failure", "reason": "Conflict",
			"message": "the object has been modified", "code": 409},
	}))
	gke := source(t, "gke")
	for _, p := range audit.Paths() {
		c, listed := carriage(gke, p.Path)
		if set := p.IsSet(ev); set == (listed && c == Absent) {
			t.Errorf("%s: set %v, but the GKE source says %q", p.Path, set, c)
		}
	}
	for _, f := range gke.Fields {
		if !slices.ContainsFunc(audit.Paths(), func(p audit.Path) bool { return p.Path == f.Path }) {
			t.Errorf("the GKE source names %s, which is no value of an event", f.Path)
		}
	}
}

// The other sources deliver the apiserver's Event whole: decoded from
// their records, an event with every value set is the same event.
func TestWrappingSourcesCarryEveryField(t *testing.T) {
	full := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"f1","stage":"ResponseStarted",` +
		`"requestURI":"/apis/apps/v1/namespaces/default/deployments/web/scale?dryRun=All","verb":"update",` +
		`"user":{"username":"alice","uid":"u1","groups":["dev","system:authenticated"],"extra":{"scopes":["a"]}},` +
		`"impersonatedUser":{"username":"bob","uid":"u2","groups":["ops"],"extra":{"k":["v"]}},` +
		`"sourceIPs":["203.0.113.7","10.0.0.1"],"userAgent":"kubectl/v1.30.1",` +
		`"objectRef":{"resource":"deployments","namespace":"default","name":"web","uid":"o1","apiGroup":"apps","apiVersion":"v1","resourceVersion":"42","subresource":"scale"},` +
		`"responseStatus":{"metadata":{},"status":"Failure","message":"conflict","reason":"Conflict","code":409},` +
		`"requestObject":{"spec":{"replicas":3}},"responseObject":{"kind":"Status"},` +
		`"requestReceivedTimestamp":"2026-03-04T10:00:00.000001Z","stageTimestamp":"2026-03-04T10:00:00.000002Z",` +
		`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC"}}`
	want, err := audit.Decode([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range audit.Paths() {
		if !p.IsSet(want) {
			t.Fatalf("the full event lacks %s", p.Path)
		}
	}
	records := map[Format]string{
		FormatCloudWatch: `{"events":[{"timestamp":1,"message":` + quoted(full) + `}]}`,
		FormatAKS:        `{"records":[{"category":"kube-audit","properties":{"log":` + quoted(full) + `}}]}`,
	}
	for _, src := range Sources() {
		if src.Format == FormatGKE {
			continue
		}
		if len(src.Fields) != 0 || src.Stages != nil {
			t.Errorf("%s: says it leaves out fields or stages, and delivers the apiserver's Event", src.Name)
		}
		b, err := Decode([]byte(records[src.Format]))
		if err != nil || len(b.Items) != 1 || b.Items[0].Err != nil {
			t.Fatalf("%s: %v %v", src.Name, err, got(b))
		}
		ev, err := audit.Decode(b.Items[0].Raw.Data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ev, want) {
			t.Errorf("%s: event changed on the way:\n got  %+v\n want %+v", src.Name, ev, want)
		}
	}
}

// docs/ingest.md's GKE table names every value of an event, says "not
// logged" of those the GKE source leaves out, and says what is missing of
// those it gives in part.
func TestGKETableInTheDocsIsTrue(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/ingest.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### GKE: from LogEntry to Event, field by field")
	if !ok {
		t.Fatal("docs/ingest.md has no GKE field table")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	missing := map[string]string{} // path: what the "does not give" column says
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		parent := ""
		for _, name := range strings.Split(cells[1], ",") {
			name = strings.Trim(strings.TrimSpace(name), "`")
			if strings.HasPrefix(name, ".") {
				name = parent + name
			} else if i := strings.LastIndexByte(name, '.'); i > 0 {
				parent = name[:i]
			}
			missing[name] = strings.TrimSpace(cells[3])
		}
	}
	gke := source(t, "gke")
	for _, p := range audit.Paths() {
		says, ok := "", false
		for at := p.Path; !ok && at != ""; {
			says, ok = missing[at]
			i := strings.LastIndexByte(at, '.')
			if i < 0 {
				break
			}
			at = at[:i]
		}
		if !ok {
			if p.Kind != audit.KindObject { // a struct is named by its members
				t.Errorf("the table does not name %s", p.Path)
			}
			continue
		}
		c, listed := carriage(gke, p.Path)
		switch {
		case listed && c == Absent && !strings.Contains(says, "not logged"):
			t.Errorf("%s: the table says %q; the GKE source leaves it out", p.Path, says)
		case listed && c == Partial && says == "":
			t.Errorf("%s: the table says nothing is missing; the GKE source gives it in part", p.Path)
		case !listed && strings.Contains(says, "not logged"):
			t.Errorf("%s: the table says %q; the GKE source carries it", p.Path, says)
		}
	}
}
