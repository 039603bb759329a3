package config_test

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/quiet"
)

// TestSilentAfterIsInheritedUnlessOverridden: every source gets
// ingest.silent_after, 5m by default, unless it says otherwise; 0 and off
// both turn it off.
func TestSilentAfterIsInheritedUnlessOverridden(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte(`
ingest:
  silent_after: 2m
  files:
    - {path: /a.log}
    - {path: /b.log, silent_after: off}
    - {path: /c.log, silent_after: 0}
  webhook: {listen: ":8443", insecure: true, silent_after: 30s}
  sources:
    - {type: eks}
`))
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Ingest
	got := []time.Duration{in.Files[0].SilentAfter.Duration, in.Files[1].SilentAfter.Duration, in.Files[2].SilentAfter.Duration,
		in.Webhook.SilentAfter.Duration, in.Sources[0].SilentAfter.Duration}
	want := []time.Duration{2 * time.Minute, 0, 0, 30 * time.Second, 2 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("silent_after of source %d = %s, want %s", i, got[i], want[i])
		}
	}
	if !in.Files[1].SilentAfter.Off() || in.Files[0].SilentAfter.Off() {
		t.Error("off is not told from a duration")
	}

	cfg, err = config.Parse("v.yaml", []byte("ingest:\n  files: [{path: /a.log}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Ingest.Files[0].SilentAfter.Duration; d != quiet.DefaultAfter {
		t.Errorf("default silent_after = %s, want %s", d, quiet.DefaultAfter)
	}
	out, err := yaml.Marshal(cfg.Ingest.Files[0])
	if err != nil || !strings.Contains(string(out), "silent_after: 5m0s") {
		t.Errorf("silent_after written as %q (%v)", out, err)
	}
}

func TestSilentAfterErrorsNameLineAndColumn(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"not a duration", "ingest:\n  silent_after: 5 minutes\n", `v.yaml:2:17: ingest.silent_after: "5 minutes" is not a duration (like 5m) or off`},
		{"negative", "ingest:\n  files:\n    - {path: /a.log, silent_after: -1m}\n", "v.yaml:3:36: ingest.files[0].silent_after: must not be negative, got -1m0s"},
		{"too short", "ingest:\n  webhook:\n    listen: ':8443'\n    insecure: true\n    silent_after: 10ms\n", "v.yaml:5:19: ingest.webhook.silent_after: 10ms is shorter than 1s"},
		{"a mapping", "ingest:\n  sources:\n    - {type: eks, silent_after: {after: 5m}}\n", "v.yaml:3:33: ingest.sources[0].silent_after: a mapping is not a duration"},
		{"a boolean", "ingest:\n  silent_after: false\n", `v.yaml:2:17: ingest.silent_after: "false" is not a duration (like 5m) or off`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("v.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
