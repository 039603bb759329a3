package alert

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBoundKeepsAlertsSmall(t *testing.T) {
	ips := make([]string, 100)
	for i := range ips {
		ips[i] = "10.0.0.1"
	}
	a := &Alert{
		User:      "system:serviceaccount:x:" + strings.Repeat("é", MaxFieldBytes),
		Name:      "small",
		Output:    strings.Repeat("o", 3*MaxFieldBytes),
		UserAgent: strings.Repeat("<!channel>", MaxFieldBytes),
		SourceIPs: ips,
	}
	if !a.BoundTo(DefaultLimits()).Any() {
		t.Fatal("Bound cut nothing")
	}
	for name, s := range map[string]string{"user": a.User, "output": a.Output, "userAgent": a.UserAgent} {
		if len(s) > MaxFieldBytes || !utf8.ValidString(s) || !strings.HasSuffix(s, "…") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, marked %v", name, len(s), utf8.ValidString(s), strings.HasSuffix(s, "…"))
		}
	}
	if !strings.HasPrefix(a.User, "system:serviceaccount:x:é") || a.Name != "small" || len(a.SourceIPs) != MaxSourceIPs {
		t.Errorf("Bound changed what fits: user %.30q name %q, %d sourceIPs", a.User, a.Name, len(a.SourceIPs))
	}
	if a.BoundTo(DefaultLimits()).Any() {
		t.Error("a bounded alert is cut again")
	}
}

func TestBoundToConfiguredLimits(t *testing.T) {
	ips := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", strings.Repeat("f", 600)}
	a := &Alert{Output: strings.Repeat("o", 1000), Name: strings.Repeat("n", 512), SourceIPs: ips}
	cut := a.BoundTo(Limits{FieldBytes: 512, SourceIPs: 3})
	if !cut.Fields || !cut.SourceIPs {
		t.Fatalf("cut = %+v, want fields and sourceIPs", cut)
	}
	if len(a.Output) > 512 || !strings.HasSuffix(a.Output, "…") || len(a.Name) != 512 || len(a.SourceIPs) != 3 {
		t.Errorf("after BoundTo: output %d bytes, name %d bytes, %d sourceIPs; want ≤512 marked, 512 untouched, 3", len(a.Output), len(a.Name), len(a.SourceIPs))
	}
	if got := DefaultLimits().Bytes(); got > MaxBoundedBytes {
		t.Errorf("default limits allow %d bytes, more than MaxBoundedBytes %d", got, MaxBoundedBytes)
	}
}

// fill sets every string of v (a struct, through its lists and structs) to
// s and makes every list n long, as a hostile event could.
func fill(v reflect.Value, s string, n int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(v.Index(i), s, n)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), s, n)
		}
	default:
	}
}

// stringBytes adds up the strings of v.
func stringBytes(v reflect.Value) int {
	switch v.Kind() {
	case reflect.String:
		return v.Len()
	case reflect.Slice:
		n := 0
		for i := range v.Len() {
			n += stringBytes(v.Index(i))
		}
		return n
	case reflect.Struct:
		n := 0
		for i := range v.NumField() {
			n += stringBytes(v.Field(i))
		}
		return n
	default:
		return 0
	}
}

// ruleFields are the fields of an alert the rule file gives, whatever the
// event: the id is the rule's and the request's.
var ruleFields = []string{"ID", "Rule", "Title", "Severity", "Tags", "Window"}

// TestBoundCutsEveryField fills every string and list of an alert that an
// event can shape, those added later included, far past any limit: the
// bounded alert stays within Limits.Bytes, which the configuration keeps
// under MaxBoundedBytes, and fits in a NATS message.
func TestBoundCutsEveryField(t *testing.T) {
	for _, l := range []Limits{DefaultLimits(), {FieldBytes: 256, SourceIPs: 1, Groups: 1}, {FieldBytes: 24 << 10, SourceIPs: 4}} {
		var a Alert
		fill(reflect.ValueOf(&a).Elem(), strings.Repeat("<é", 20<<10), 200)
		for _, f := range ruleFields {
			v := reflect.ValueOf(&a).Elem().FieldByName(f)
			v.Set(reflect.Zero(v.Type()))
		}
		cut := a.BoundTo(l)
		if !cut.Fields || !cut.SourceIPs || !cut.Groups || !cut.Members {
			t.Errorf("limits %+v: cut = %+v, want everything cut", l, cut)
		}
		if got := stringBytes(reflect.ValueOf(a)); got > l.Bytes() {
			t.Errorf("limits %+v: %d bytes of strings, more than Bytes() %d", l, got, l.Bytes())
		}
		d := l.withDefaults()
		if len(a.UserGroups) != d.Groups || len(a.ImpersonatedGroups) != d.Groups || len(a.Members) != MaxMembers || len(a.SourceIPs) != d.SourceIPs {
			t.Errorf("limits %+v: %d user groups, %d impersonated groups, %d members, %d source IPs",
				l, len(a.UserGroups), len(a.ImpersonatedGroups), len(a.Members), len(a.SourceIPs))
		}
		if a.RunbookURL != "" {
			t.Errorf("limits %+v: a runbook URL over %d bytes was kept cut: %.40q", l, MaxRunbookURL, a.RunbookURL)
		}
		for _, s := range append(append(slices.Clone(a.UserGroups), a.ImpersonatedGroups...), a.Members[0].User, a.Members[MaxMembers-1].Name) {
			if len(s) > min(l.FieldBytes, MaxItemBytes) || !utf8.ValidString(s) {
				t.Fatalf("limits %+v: group or member string of %d bytes, valid UTF-8 %v", l, len(s), utf8.ValidString(s))
			}
		}
		b, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		// JSON escapes < as \u003c: the room MaxBoundedBytes leaves is
		// for escaping like this at the default limits.
		if l.FieldBytes <= MaxFieldBytes && len(b) > 1<<20 {
			t.Errorf("limits %+v: the bounded alert is %d bytes of JSON, more than a NATS message", l, len(b))
		}
	}
	if got := DefaultLimits().Bytes(); got > MaxBoundedBytes {
		t.Errorf("default limits allow %d bytes, more than MaxBoundedBytes %d", got, MaxBoundedBytes)
	}
}

// A runbook URL the loader accepted is never cut.
func TestBoundKeepsRunbookURL(t *testing.T) {
	u := "https://example.com/" + strings.Repeat("r", MaxRunbookURL-len("https://example.com/"))
	a := &Alert{RunbookURL: u}
	if cut := a.BoundTo(Limits{FieldBytes: 256}); cut.Any() || a.RunbookURL != u {
		t.Errorf("cut %+v, runbook URL of %d bytes", cut, len(a.RunbookURL))
	}
}
