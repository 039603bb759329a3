package audit_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
)

const corpus = "../../../shared/corpus"

func TestDecodeRealClusterLog(t *testing.T) {
	f, err := os.Open(filepath.Join(corpus, "immudb-log-audit/k8s.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	n, stages := 0, map[string]int{}
	for sc.Scan() {
		ev, err := audit.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		stages[ev.Stage]++
		if ev.Time().IsZero() {
			t.Fatalf("line %d: no timestamp", n)
		}
	}
	// Figures from the corpus's SOURCES.md.
	if n != 2971 || stages["RequestReceived"] != 1484 || stages["ResponseComplete"] != 1376 || stages["ResponseStarted"] != 111 {
		t.Fatalf("decoded %d events, stages %v; want 2971 (1484/1376/111)", n, stages)
	}
}

func TestDecodeFalcoCapturesOfEveryVersion(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(corpus, "falco-trace-files/*.json"))
	if err != nil || len(files) != 47 {
		t.Fatalf("want the 47 falco trace files, got %d (%v)", len(files), err)
	}
	events, malformed := 0, 0
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.Lines(data) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if _, err := audit.Decode(line); err != nil {
				if filepath.Base(p) != "fal_01_003.json" {
					t.Errorf("%s: %v", filepath.Base(p), err)
				}
				malformed++
				continue
			}
			events++
		}
	}
	if events != 51 || malformed != 1 {
		t.Fatalf("decoded %d events and %d malformed, want 51 and 1", events, malformed)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := map[string]struct {
		in        string
		wrongKind bool
	}{
		"fal_01_003":       {in: `{"kind": 0}`},
		"truncated":        {in: `{"kind":"Event","auditID":"x"`},
		"pod":              {in: `{"kind":"Pod","apiVersion":"v1"}`, wrongKind: true},
		"other apiVersion": {in: `{"kind":"Event","apiVersion":"events.k8s.io/v1","auditID":"a","stage":"ResponseComplete"}`, wrongKind: true},
		"no auditID":       {in: `{"kind":"Event","stage":"ResponseComplete"}`},
		"no stage":         {in: `{"kind":"Event","auditID":"a"}`},
		"blank":            {in: "   "},
	}
	for name, c := range cases {
		_, err := audit.Decode([]byte(c.in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if got := errors.Is(err, audit.ErrWrongKind); got != c.wrongKind {
			t.Errorf("%s: ErrWrongKind = %v, want %v (%v)", name, got, c.wrongKind, err)
		}
	}
}

func TestParseBody(t *testing.T) {
	list := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[
	  {"auditID":"a","stage":"RequestReceived","verb":"get"},
	  {"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get"}]}`
	raws, err := audit.ParseBody([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != 2 || raws[1].MsgID() != "a/ResponseComplete" {
		t.Fatalf("got %+v", raws)
	}
	single := `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","auditID":"b","stage":"ResponseComplete"}`
	if raws, err := audit.ParseBody([]byte(single)); err != nil || len(raws) != 1 || raws[0].AuditID != "b" {
		t.Fatalf("single event body: %+v, %v", raws, err)
	}
	bad := `{"kind":"EventList","items":[{"auditID":"a","stage":"x"},{"auditID":""}]}`
	if _, err := audit.ParseBody([]byte(bad)); err == nil || err.Error() != "items[1]: audit event has no auditID" {
		t.Fatalf("bad item error = %v", err)
	}
}
