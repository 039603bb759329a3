package alert

import (
	"strings"
	"testing"
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
