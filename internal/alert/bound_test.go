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
	if !a.Bound() {
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
	if a.Bound() {
		t.Error("a bounded alert is cut again")
	}
}
