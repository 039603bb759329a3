package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoders: they must never panic,
// and an accepted event must be identifiable and survive a round trip.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../../../shared/corpus/*/*.json*")
	files = append(files, "../../../shared/corpus/immudb-log-audit/k8s.log", "../../../shared/corpus/audit2rbac/demo.log")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 4<<20)
		for i := 0; sc.Scan() && i < 50; i++ {
			f.Add(bytes.Clone(sc.Bytes()))
		}
	}
	f.Add([]byte(`{"kind": 0}`))
	f.Add([]byte(`{"kind":"EventList","items":[{"auditID":"a","stage":"ResponseComplete"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err == nil {
			if ev.AuditID == "" || ev.Stage == "" {
				t.Fatalf("accepted an event without identity: %q", data)
			}
			again, err := json.Marshal(ev)
			if err != nil {
				t.Fatalf("re-encoding an accepted event: %v", err)
			}
			ev2, err := Decode(again)
			if err != nil {
				t.Fatalf("re-decoding %s: %v", again, err)
			}
			if ev2.AuditID != ev.AuditID || ev2.Stage != ev.Stage || ev2.Verb != ev.Verb {
				t.Fatalf("round trip changed the event: %+v vs %+v", ev, ev2)
			}
		}
		if raws, err := ParseBody(data); err == nil {
			for _, r := range raws {
				if r.AuditID == "" || r.Stage == "" {
					t.Fatalf("ParseBody accepted an item without identity: %q", data)
				}
			}
		}
	})
}
