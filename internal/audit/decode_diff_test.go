package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The decoder must accept exactly what encoding/json accepts and produce the
// same Event. These reference implementations are the decoding functions
// as they were written on top of encoding/json.

func refDecode(data []byte) (*Event, error) {
	ev := &Event{}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("empty event")
	}
	if err := json.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("malformed audit event: %w", err)
	}
	if err := validate(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

func refParseRaw(data []byte) (Raw, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Raw{}, errors.New("empty event")
	}
	var h struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
		AuditID    string `json:"auditID"`
		Stage      string `json:"stage"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return Raw{}, fmt.Errorf("malformed audit event: %w", err)
	}
	if err := validateHeader(h.Kind, h.APIVersion, h.AuditID, h.Stage); err != nil {
		return Raw{}, err
	}
	return Raw{Data: data, AuditID: h.AuditID, Stage: h.Stage}, nil
}

func refParseBody(body []byte) ([]Raw, error) {
	var h struct {
		Kind       string            `json:"kind"`
		APIVersion string            `json:"apiVersion"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("malformed audit body: %w", err)
	}
	switch h.Kind {
	case "Event":
		r, err := refParseRaw(body)
		if err != nil {
			return nil, err
		}
		return []Raw{r}, nil
	case "EventList":
	default:
		return nil, fmt.Errorf("%w: body kind %q, want EventList or Event", ErrWrongKind, h.Kind)
	}
	out := make([]Raw, 0, len(h.Items))
	for i, item := range h.Items {
		r, err := refParseRaw(item)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// sameError compares errors as callers can tell them apart: whether there
// is one, whether it is ErrWrongKind, and, once the JSON was accepted, the
// validation message itself.
func sameError(got, want error) bool {
	if (got == nil) != (want == nil) || errors.Is(got, ErrWrongKind) != errors.Is(want, ErrWrongKind) {
		return false
	}
	malformed := func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), "malformed audit") || errors.Is(err, ErrWrongKind))
	}
	if want != nil && !malformed(want) && !malformed(got) {
		return got.Error() == want.Error()
	}
	return malformed(got) == malformed(want)
}

func checkSame(t *testing.T, data []byte) {
	t.Helper()
	// Decode copies every string: overwriting its input afterwards must
	// change nothing but the bodies, which stay sub-slices.
	buf := bytes.Clone(data)
	ev, err := Decode(buf)
	if err == nil {
		ev.RequestObject, ev.ResponseObject = bytes.Clone(ev.RequestObject), bytes.Clone(ev.ResponseObject)
	}
	for i := range buf {
		buf[i] = 'x'
	}
	want, werr := refDecode(data)
	if !sameError(err, werr) {
		t.Fatalf("Decode(%.200q): error %v, encoding/json: %v", data, err, werr)
	}
	if err == nil && !reflect.DeepEqual(ev, want) {
		t.Fatalf("Decode(%.200q) =\n%#v\nencoding/json:\n%#v", data, ev, want)
	}
	var shared Event
	err = DecodeShared(bytes.Clone(data), &shared)
	if !sameError(err, werr) {
		t.Fatalf("DecodeShared(%.200q): error %v, encoding/json: %v", data, err, werr)
	}
	if err == nil && !reflect.DeepEqual(&shared, want) {
		t.Fatalf("DecodeShared(%.200q) =\n%#v\nencoding/json:\n%#v", data, &shared, want)
	}
	raw, err := ParseRaw(data)
	wraw, werr := refParseRaw(data)
	if !sameError(err, werr) {
		t.Fatalf("ParseRaw(%.200q): error %v, encoding/json: %v", data, err, werr)
	}
	if err == nil && !reflect.DeepEqual(raw, wraw) {
		t.Fatalf("ParseRaw(%.200q) = %+v, encoding/json: %+v", data, raw, wraw)
	}
	raws, err := ParseBody(data)
	wraws, werr := refParseBody(data)
	if !sameError(err, werr) {
		t.Fatalf("ParseBody(%.200q): error %v, encoding/json: %v", data, err, werr)
	}
	if err == nil && !reflect.DeepEqual(raws, wraws) {
		t.Fatalf("ParseBody(%.200q) = %+v, encoding/json: %+v", data, raws, wraws)
	}
}

// corpusLines are the lines of every corpus file, and each whole file.
func corpusLines(t testing.TB) [][]byte {
	files, _ := filepath.Glob("../../../shared/corpus/*/*")
	var out [][]byte
	for _, name := range files {
		if strings.HasSuffix(name, ".md") {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		out = append(out, data)
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			out = append(out, bytes.Clone(sc.Bytes()))
		}
	}
	if len(out) < 3000 {
		t.Fatalf("only %d corpus lines: is ../shared/corpus there?", len(out))
	}
	return out
}

// edgeCases exercise what a decoder is likely to get subtly wrong.
func edgeCases() []string {
	ok := `"auditID":"a","stage":"s"`
	deep := func(n int) string {
		return `{` + ok + `,"requestObject":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	deepObj := func(n int) string {
		return `{` + ok + `,"x":` + strings.Repeat(`{"a":`, n) + `1` + strings.Repeat("}", n) + `}`
	}
	cases := []string{
		`{"KIND":"Event","auditid":"a","Stage":"s"}`,
		`{"kind":"Event",` + ok + `,"\u212aind":"x"}`,
		"{\"kind\":\"Event\"," + ok + ",\"\u212aind\":\"x\"}",
		"{\"auditID\":\"a\",\"\u017ftage\":\"x\"}",
		"{\"auditID\":\"a\xff\",\"stage\":\"s\"}",
		"{\"auditID\":\"a\xed\xa0\x80\",\"stage\":\"s\"}",
		"{\"auditID\":\"a\xe2\x82\",\"stage\":\"s\"}",
		"{" + ok + ",\"requestObject\":\"a\xffb\"}",
		"{" + ok + ",\"x\xff\":\"a\xffb\"}",
		"{" + ok + ",\"annotations\":{\"x\xff\":\"a\xffb\",\"\\u00e9\":\"\\ud83d\\ude00\"}}",
		`{` + ok + `,"user":{"groups":["a",null]}}`,
		`{` + ok + `,"responseStatus":{"code":-0}}`,
		`{` + ok + `,"responseStatus":{"code":null}}`,
		`{` + ok + `,"responseStatus":{"code":-9223372036854775808}}`,
		`{` + ok + `,"responseStatus":{"code":9223372036854775807}}`,
		`{` + ok + `,"responseStatus":{"code":9223372036854775808}}`,
		`{` + ok + `,"responseStatus":{"code":-9223372036854775809}}`,
		`{` + ok + `,"responseStatus":{"code":99999999999999999999}}`,
		`{` + ok + `,"responseStatus":{"code":1.5}}`,
		`{` + ok + `,"responseStatus":{"code":1e2}}`,
		`{` + ok + `,"responseStatus":{"code":"200"}}`,
		`{` + ok + `,"responseStatus":{"code":true}}`,
		`{` + ok + `,"responseStatus":{"code":200,"Code":201,"metadata":{"a":[1,{}]}}}`,
		`{"auditID":"a\ud800","stage":"s"}`,
		`{"auditID":"a\ud83d\ude00","stage":"s"}`,
		`{"auditID":"a\ud83dx","stage":"s"}`,
		`{"auditID":"a\ud83d\u0041","stage":"s"}`,
		`{"auditID":"a\udc00\ud800","stage":"s"}`,
		`{"auditID":"a\u0000\/\b\f\n\r\t\"\\","stage":"s"}`,
		`{"auditID":"a\'","stage":"s"}`,
		`{"auditID":"a\x41","stage":"s"}`,
		`{` + ok + `,"objectRef":{"name":"a"},"objectRef":{"uid":"b"}}`,
		`{` + ok + `,"objectRef":{"name":"a"},"objectRef":null,"objectRef":{"uid":"b"}}`,
		`{` + ok + `,"impersonatedUser":{"username":"a"},"impersonatedUser":null,"impersonatedUser":{"uid":"b"}}`,
		`{` + ok + `,"responseStatus":{"code":1},"responseStatus":{"reason":"b"}}`,
		`{` + ok + `,"user":{"username":"a"},"user":{"uid":"b"},"user":null}`,
		`{` + ok + `,"user":{"groups":["a","b"]},"user":{"groups":["c"]}}`,
		`{` + ok + `,"user":{"extra":{"a":["1"]}},"user":{"extra":{"b":["2"],"c":null,"d":[]}}}`,
		`{` + ok + `,"user":{"extra":{"a":["1"]}},"user":{"extra":null}}`,
		`{` + ok + `,"sourceIPs":["a","b"],"sourceIPs":null}`,
		`{` + ok + `,"sourceIPs":["a","b"],"sourceIPs":[]}`,
		`{` + ok + `,"annotations":{"a":"1"},"annotations":null}`,
		`{` + ok + `,"annotations":{"a":"1","a":"2"},"annotations":{"b":"2","c":null}}`,
		`{` + ok + `,"sourceIPs":[],"user":{"groups":[],"extra":{}},"annotations":{}}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.123456789Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.1234567891Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00+02:00","timestamp":"2020-01-01T00:00:00-07:30"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01 00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00\u005a"}`,
		`{` + ok + `,"stageTimestamp":""}`,
		`{` + ok + `,"stageTimestamp":null}`,
		`{` + ok + `,"stageTimestamp":5}`,
		`{` + ok + `,"stageTimestamp":{"a":1}}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00Z","stageTimestamp":null}`,
		`{` + ok + `,"requestReceivedTimestamp":"2020-02-30T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2024-02-29T23:59:59.5Z"}`,
		`{` + ok + `,"stageTimestamp":"2023-02-29T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"1900-02-29T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2000-02-29T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-04-31T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T24:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:60:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:60Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-13-01T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-00-10T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-00T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"0000-01-01T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"9999-12-31T23:59:59.999999999Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00,5Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.12a4Z"}`,
		`{` + ok + `,"stageTimestamp":"+020-01-01T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-1-01T00:00:00Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.0000000000Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.1234567890Z"}`,
		`{` + ok + `,"stageTimestamp":"2020-01-01T00:00:00.000001Z"}`,
		`{` + ok + `,"requestObject":  {"a":1}  ,"responseObject":[ 1 ,"x", true,false,null,-0.5e-3]}`,
		`{` + ok + `,"requestObject":null,"responseObject":"null"}`,
		`{` + ok + `,"requestObject":1,"requestObject":null}`,
		`{` + ok + `,"user":"x"}`,
		`{` + ok + `,"user":[]}`,
		`{` + ok + `,"objectRef":[]}`,
		`{` + ok + `,"objectRef":{"name":1}}`,
		`{` + ok + `,"impersonatedUser":true}`,
		`{` + ok + `,"responseStatus":"x"}`,
		`{` + ok + `,"annotations":[]}`,
		`{` + ok + `,"annotations":{"a":1}}`,
		`{` + ok + `,"annotations":{"a":{}}}`,
		`{` + ok + `,"user":{"extra":{"k":"v"}}}`,
		`{` + ok + `,"user":{"extra":[]}}`,
		`{` + ok + `,"sourceIPs":"x"}`,
		`{` + ok + `,"sourceIPs":[1]}`,
		`{` + ok + `,"sourceIPs":[[]]}`,
		`{` + ok + `,"verb":5}`,
		`{` + ok + `,"verb":{"a":"\q"}}`,
		`{` + ok + `,"level":true}`,
		`{` + ok + `,"kind":null,"apiVersion":null}`,
		`{"kind":"Pod",` + ok + `}`,
		`{"kind":"Pod",` + ok + `,"verb":1}`,
		`{"kind":"EventList","items":[{` + ok + `},{"auditID":"b","stage":"s"}]}`,
		`{"kind":"EventList","items":[]}`,
		`{"kind":"EventList","items":null}`,
		`{"kind":"EventList"}`,
		`{"kind":"EventList","items":[null]}`,
		`{"kind":"EventList","items":[1]}`,
		`{"kind":"EventList","items":{}}`,
		`{"kind":"EventList","items":[{` + ok + `}],"items":[]}`,
		`{"kind":"EventList","ITEMS":[{` + ok + `}]}`,
		"{\"kind\":\"EventList\",\"items\":[ {" + ok + "} ,\t{\"kind\":\"Pod\"}]}",
		`{"apiVersion":"audit.k8s.io/v1beta1",` + ok + `}`,
		`{"apiVersion":"v1",` + ok + `}`,
		`{"auditID":"","stage":"s"}`,
		`{"auditID":"a","stage":""}`,
		`{"auditID":"a","stage":"s","x":01}`,
		`{"auditID":"a","stage":"s","x":1.}`,
		`{"auditID":"a","stage":"s","x":-}`,
		`{"auditID":"a","stage":"s","x":-a}`,
		`{"auditID":"a","stage":"s","x":1e}`,
		`{"auditID":"a","stage":"s","x":1e+}`,
		`{"auditID":"a","stage":"s","x":.5}`,
		`{"auditID":"a","stage":"s","x":+5}`,
		`{"auditID":"a","stage":"s","x":NaN}`,
		`{"auditID":"a","stage":"s","x":tru}`,
		`{"auditID":"a","stage":"s","x":nulll}`,
		`{"auditID":"a","stage":"s","x":"\u00zz"}`,
		`{"auditID":"a","stage":"s","x":"\u00e"}`,
		`{"auditID":"a","stage":"s","x":"\q"}`,
		`{"auditID":"a","stage":"s","x":"\`,
		`{"auditID":"a","stage":"s","x":"\u00`,
		`{"auditID":"a","stage":"s","x":"abc`,
		`{"auditID":"a","stage":"s","x":[1,]}`,
		`{"auditID":"a","stage":"s","x":[1 2]}`,
		`{"auditID":"a","stage":"s","x":{"a":1,}}`,
		`{"auditID":"a","stage":"s","x":{"a" 1}}`,
		`{"auditID":"a","stage":"s","x":{1:1}}`,
		`{"auditID":"a","stage":"s","x":{"a":}}`,
		`{"auditID":"a","stage":"s","x":}`,
		`{"auditID":"a","stage":"s","x"}`,
		`{"auditID":"a","stage":"s",}`,
		`{"auditID":"a","stage":"s" "x":1}`,
		`{"auditID":"a","stage":"s"`,
		`{"auditID":"a","stage":"s",`,
		`{"auditID":"a","stage":"s"} x`,
		`{"auditID":"a","stage":"s"}{}`,
		"{\"auditID\":\"a\",\"stage\":\"s\"}\x00",
		"{\"auditID\":\"a\",\"stage\":\"s\"\t,\r\n\"x\":1}",
		"{\"auditID\":\"a\",\"stage\":\"s\",\"x\":\"\t\"}",
		"{\"auditID\":\"a\",\"stage\":\"s\",\"x\":\"\x7f\x1f\"}",
		"{\"auditID\":\"a\",\"stage\":\"s\",\"requestObject\":\"0123456789abcdef\x01\"}",
		"\xef\xbb\xbf{\"auditID\":\"a\",\"stage\":\"s\"}",
		"\v{\"auditID\":\"a\",\"stage\":\"s\"}\f",
		"\u00a0{\"kind\":\"EventList\",\"items\":[]}\u0085",
		`null`, ` null `, `nul`, `[]`, `[{"auditID":"a","stage":"s"}]`, `"x"`, `1`, `true`, `{}`, `{`, `}`, ``, ` `,
		`{"Cluster":"x","-":"y",` + ok + `}`,
		`{"user":{"USERNAME":"x","userName":"y"},` + ok + `}`,
		`{"requestobject":{"x":1},"RESPONSEOBJECT":2,` + ok + `}`,
		`{"\u0073tage":"t","auditID":"a"}`,
		`{"stage":"s","audit\u0049D":"a"}`,
		`{"stage\u0000":"s","auditID":"a"}`,
		deep(9998), deep(9999), deep(10000), deep(20000),
		deepObj(9998), deepObj(9999), deepObj(10000),
		`{` + ok + `,"x":` + strings.Repeat("[", 100000),
		`{` + ok + `,"x":` + strings.Repeat(`{"a":[`, 70) + `1` + strings.Repeat("]}", 70) + `}`,
		`{` + ok + `,"x":` + strings.Repeat(`{"a":[`, 70) + `1` + strings.Repeat("]}", 69) + `]}`,
		`{` + ok + `,"x":` + strings.Repeat(`[{"a":`, 70) + `1` + strings.Repeat("}]", 70) + `}`,
	}
	// Long strings, which are scanned differently past a few dozen bytes.
	long := strings.Repeat("abcdefgh", 9)
	for _, mid := range []string{"\x01", "\x1f", "\x7f", "\xff", "\xc3\xa9", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\q", "\\\"", "\"", ""} {
		for _, at := range []int{0, 7, 8, 15, 16, 31, 32, 33, 40, 47, 48, 63, 64, 71} {
			v := long[:at] + mid + long[at:]
			cases = append(cases,
				`{`+ok+`,"userAgent":"`+v+`","requestObject":{"a":"`+v+`"}}`,
				`{`+ok+`,"requestObject":"`+v+`"}`,
				`{`+ok+`,"x":"`+v)
		}
	}
	return cases
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, c := range edgeCases() {
		checkSame(t, []byte(c))
	}
	lines := corpusLines(t)
	for _, line := range lines {
		checkSame(t, line)
	}
	// Damaged corpus lines: every way of cutting a few lines short, and
	// every byte of them replaced by characters that matter to JSON.
	n := 0
	for _, line := range lines {
		if len(line) > 4000 || len(line) < 50 {
			continue
		}
		if n++; n > 12 {
			break
		}
		for i := range line {
			checkSame(t, line[:i])
		}
		for i := range line {
			for _, c := range []byte{'"', '\\', '{', '}', '[', ']', ',', ':', 'x', '0', ' ', 0x01, 0xff} {
				mut := bytes.Clone(line)
				mut[i] = c
				checkSame(t, mut)
			}
		}
	}
}

// FuzzDecodeMatchesEncodingJSON compares the decoders with encoding/json on
// arbitrary input.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, c := range edgeCases() {
		if len(c) < 1000 {
			f.Add([]byte(c))
		}
	}
	for i, line := range corpusLines(f) {
		if i%25 == 0 && len(line) < 20000 {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSame(t, data)
	})
}
