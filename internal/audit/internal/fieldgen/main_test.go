package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent fails when event.go changed and schema_gen.go
// was not generated again.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	src, err := os.ReadFile("../../event.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate("event.go", src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../schema_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("internal/audit/schema_gen.go is stale: run go generate ./internal/audit")
	}
}

// TestRejectsWhatItCannotDecode: a member of a type the decoder has no
// reader for, or a has tag naming no member, is an error, not silence.
func TestRejectsWhatItCannotDecode(t *testing.T) {
	for src, want := range map[string]string{
		"package audit\ntype Event struct{ N int `json:\"n\"` }":                                                 "Event.N: the decoder has no reader",
		"package audit\ntype Event struct{ U U `json:\"u\" has:\"x\"` }\ntype U struct{ A string `json:\"a\"` }": `has names "x"`,
		"package audit\ntype Event struct{ U *U `json:\"u\"` }\ntype U struct{ V *U `json:\"v\"` }":              "only Event may hold optional structs",
		"package audit\ntype Other struct{}":                                                                     "no struct type Event",
		"package audit\ntype Event struct{ A string }":                                                           "Event.A has no json name",
		"package audit\ntype Event struct{ U Missing `json:\"u\"` }":                                             "Event.U: the decoder has no reader",
	} {
		_, err := generate("event.go", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", src, err, want)
		}
	}
}
