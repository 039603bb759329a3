package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const rawEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",` +
	`"verb":"get","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"default","name":"db"},"responseStatus":{"code":200}}`

func event(id string) string { return strings.Replace(rawEvent, `"a1"`, `"`+id+`"`, 1) }

// quoted is s as a JSON string, as properties.log and message carry events.
func quoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// cut is the event id cut short after n bytes, as a provider truncates it.
func cut(id string, n int) string { return event(id)[:n] }

// got summarises a batch: per item its path and either the auditID or the
// error.
func got(b Batch) []string {
	var out []string
	for _, it := range b.Items {
		switch {
		case it.Err == nil:
			out = append(out, it.Path+"="+it.Raw.AuditID)
		case errors.Is(it.Err, ErrTruncated):
			out = append(out, it.Path+"!truncated")
		case errors.Is(it.Err, ErrNotAudit):
			out = append(out, it.Path+"!not-audit")
		default:
			out = append(out, it.Path+"!"+it.Err.Error())
		}
	}
	return out
}

func TestDecodeRecognisesEachFormat(t *testing.T) {
	cases := []struct {
		name   string
		record string
		format Format
		want   []string
	}{
		{"raw event", event("a1"), FormatEvent, []string{"=a1"}},
		{"event without apiVersion", `{"auditID":"a2","stage":"ResponseComplete","verb":"get"}`, FormatEvent, []string{"=a2"}},
		{"event list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + event("a1") + `,{"kind":"Event"},` + event("a3") + `]}`,
			FormatEventList, []string{"items[0]=a1", "items[1]!audit event has no auditID", "items[2]=a3"}},
		{"AKS record", `{"category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",` +
			`"properties":{"log":` + quoted(event("k1")) + `,"stream":"stdout","pod":"kube-apiserver-6f7d"},"time":"2026-03-04T10:00:00Z"}`,
			FormatAKS, []string{"properties.log=k1"}},
		{"AKS record, log as an object", `{"category":"kube-audit-admin","properties":{"log":` + event("k2") + `}}`,
			FormatAKS, []string{"properties.log=k2"}},
		{"AKS document", `{"records":[{"category":"kube-audit","properties":{"log":` + quoted(event("k1")) + `}},` +
			`{"category":"kube-apiserver","properties":{"log":"I0304 10:00:00 started"}},` +
			`{"category":"kube-audit","properties":{"log":` + quoted(cut("k3", 90)) + `}},` +
			`{"category":"kube-audit","properties":{}},` +
			`{"category":"kube-audit","properties":{"log":` + quoted(event("k5")) + `}}]}`,
			FormatAKS, []string{"records[0].properties.log=k1", "records[1]!not-audit", "records[2].properties.log!truncated",
				"records[3].properties.log!missing, which holds the event", "records[4].properties.log=k5"}},
		{"filter-log-events output", `{"events":[` +
			`{"logStreamName":"kube-apiserver-audit-0a1b","timestamp":1772618400000,"message":` + quoted(event("e1")) + `,"ingestionTime":1772618401000,"eventId":"38"},` +
			`{"logStreamName":"kube-apiserver-audit-0a1b","timestamp":1772618400000,"message":` + quoted(cut("e2", 120)+"[Truncated...]") + `,"eventId":"39"},` +
			`{"logStreamName":"kube-apiserver-audit-0a1b","timestamp":1772618400001,"message":` + quoted(cut("e3", 100)) + `,"eventId":"40"}],` +
			`"searchedLogStreams":[],"nextToken":"f/38"}`,
			FormatCloudWatch, []string{"events[0].message=e1", "events[1].message!truncated", "events[2].message!truncated"}},
		{"get-log-events output", `{"events":[{"timestamp":1,"message":` + quoted(event("e4")) + `,"ingestionTime":2}],` +
			`"nextForwardToken":"f/1","nextBackwardToken":"b/1"}`, FormatCloudWatch, []string{"events[0].message=e4"}},
		{"one CloudWatch event", `{"timestamp":1,"message":` + quoted(event("e5")) + `,"ingestionTime":2}`,
			FormatCloudWatch, []string{"message=e5"}},
		{"CloudWatch event without a message", `{"events":[{"timestamp":1}]}`, FormatCloudWatch, []string{"events[0]!message: missing, which holds the event"}},
		{"subscription filter data", `{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/prod/cluster",` +
			`"logStream":"kube-apiserver-audit-0a1b","subscriptionFilters":["vigil"],"logEvents":[{"id":"38","timestamp":1,"message":` + quoted(event("s1")) + `}]}`,
			FormatCloudWatch, []string{"logEvents[0].message=s1"}},
		{"subscription filter check", `{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}`,
			FormatCloudWatch, []string{"!not-audit"}},
		{"S3 export line", "2026-03-04T10:00:00.123Z " + event("x1"), FormatCloudWatch, []string{"=x1"}},
		{"S3 export line, cut", "2026-03-04T10:00:00.123Z " + cut("x2", 80) + "[Truncated...]", FormatCloudWatch, []string{"!truncated"}},
		{"gcloud's list of entries", `[` + gkeEntry + `,` + event("a1") + `, 3]`, FormatGKE,
			[]string{"[0]=6b2c1f9e-1d3a-4c55-9a7e-2f0e8c1b7d42", "[1]!is an audit Event, the list holds GKE LogEntry records", "[2]!not an object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode([]byte(tc.record))
			if err != nil {
				t.Fatal(err)
			}
			if b.Format != tc.format {
				t.Errorf("format %s, want %s", b.Format, tc.format)
			}
			if g := fmt.Sprint(got(b)); g != fmt.Sprint(tc.want) {
				t.Errorf("items %s\n want %s", g, fmt.Sprint(tc.want))
			}
		})
	}
}

// An item's offset is where its part of the record starts, so that a
// reader of a multi-line document can say on which line it is.
func TestDecodeItemOffsetsPointIntoTheRecord(t *testing.T) {
	record := "{\"records\": [\n  {\"category\": \"kube-audit\", \"properties\": {\"log\": " + quoted(event("k1")) + "}},\n" +
		"  {\"category\": \"kube-audit\", \"properties\": {\"log\": " + event("k2") + "}}\n]}"
	b, err := Decode([]byte(record))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`"{\"kind`, `{"kind`} {
		it := b.Items[i]
		if it.Err != nil {
			t.Fatal(it.Err)
		}
		if !strings.HasPrefix(record[it.Offset:], want) {
			t.Errorf("item %d at offset %d starts %q, want %q", i, it.Offset, record[it.Offset:it.Offset+8], want)
		}
	}
}

func TestDecodeRejectsWhatIsNoRecord(t *testing.T) {
	for record, want := range map[string]string{
		"":                          "empty record",
		"I0304 10:00:00 started":    `not JSON: starts with "I0304 10:00:00 s"`,
		`{"kind":"Event","auditID"`: "malformed JSON",
		`[{"a":1},`:                 "malformed JSON",
		`{"records": 3}`:            "records: cannot unmarshal number",
		`{"events": {}}`:            "events: cannot unmarshal object",
		`{"messageType": "HELLO"}`:  `messageType "HELLO": want DATA_MESSAGE or CONTROL_MESSAGE`,
	} {
		_, err := Decode([]byte(record))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want an error saying %q", record, err, want)
		}
	}
}

func TestAKSRecordErrorsNameTheField(t *testing.T) {
	for record, want := range map[string]string{
		`{"category":"kube-audit"}`:                               "properties: missing",
		`{"category":"kube-audit","properties":[]}`:               "properties.log: properties: not an object",
		`{"category":"kube-audit","properties":{"log":7}}`:        "properties.log: neither a string nor an object",
		`{"category":"kube-audit","properties":{"log":""}}`:       "properties.log: empty",
		`{"category":7,"properties":{}}`:                          "record.category of type string",
		`{"category":"kube-audit","properties":{"log":"{}"}}`:     "properties.log: audit event has no auditID",
		`{"category":"guard","properties":{"log":"x"}}`:           `category "guard" holds no audit events`,
		`{"category":"kube-audit","properties":{"log":"[1, 2]"}}`: "properties.log: malformed audit event",
	} {
		b, err := Decode([]byte(record))
		if err != nil {
			t.Errorf("%s: record failed as a whole: %v", record, err)
			continue
		}
		if len(b.Items) != 1 || b.Items[0].Err == nil {
			t.Errorf("%s: got %v, want one failed item", record, got(b))
			continue
		}
		if e := b.Items[0].ItemError().Error(); !strings.Contains(e, want) {
			t.Errorf("%s: error %q, want it to say %q", record, e, want)
		}
	}
}

func TestCloudWatchTruncatedTellsCutFromMalformed(t *testing.T) {
	for msg, want := range map[string]bool{
		event("a1"):                         false,
		cut("a1", 60) + "[Truncated...]":    true,
		cut("a1", 60) + "[Truncated...]\n":  true,
		cut("a1", 100):                      true,
		`{"kind":"Event",,}`:                false,
		"not json at all":                   false,
		`{"kind":"Event"} trailing garbage`: false,
	} {
		if got := CloudWatchTruncated([]byte(msg)); got != want {
			t.Errorf("CloudWatchTruncated(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestDecodeCloudWatchMessageNamesTheLostEvent(t *testing.T) {
	_, err := DecodeCloudWatchMessage([]byte(cut("7d4e-11", 120) + "[Truncated...]"))
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("error %v, want ErrTruncated", err)
	}
	for _, want := range []string{"event 7d4e-11", "ends with [Truncated...]", "after 134 bytes", "CloudWatch Logs cuts events"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	_, err = DecodeCloudWatchMessage([]byte(`{"kind":"Event",,}`))
	if err == nil || errors.Is(err, ErrTruncated) {
		t.Errorf("malformed message: error %v, want a malformed-JSON error", err)
	}
}
