package provider

import (
	"bytes"
	"testing"
)

// Decode never fails on a record by panicking, and every item it returns
// lies within the record.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{rawEvent, gkeEntry, `[` + gkeEntry + `]`,
		`{"records":[{"category":"kube-audit","properties":{"log":` + quoted(rawEvent) + `}}]}`,
		`{"events":[{"message":` + quoted(rawEvent[:60]+"[Truncated...]") + `}]}`,
		`{"messageType":"DATA_MESSAGE","logEvents":[{"message":` + quoted(rawEvent) + `}]}`,
		"2026-03-04T10:00:00Z " + rawEvent, `{"kind":"EventList","items":[` + rawEvent + `]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, record []byte) {
		b, err := Decode(record)
		if err != nil {
			return
		}
		trimmed := bytes.TrimSpace(record)
		for _, it := range b.Items {
			if it.Offset < 0 || it.Offset > len(trimmed) {
				t.Fatalf("item %s at offset %d of a %d-byte record", it.Path, it.Offset, len(trimmed))
			}
			if it.Err == nil && len(it.Raw.Data) == 0 {
				t.Fatalf("item %s is an event without data", it.Path)
			}
		}
	})
}
