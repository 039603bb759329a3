package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/config"
)

func TestParseDefaults(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte("ingest:\n  files: [{path: /var/log/audit.log}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "default" || cfg.NATS.Replicas != 1 || !cfg.UseDefaultRules() {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	f := cfg.Ingest.Files[0]
	if f.StartAt != "beginning" || f.MaxLineBytes != 16<<20 || f.Cluster != "default" {
		t.Errorf("file defaults not applied: %+v", f)
	}
}

func TestParseErrorsNameFileLineAndProblem(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "cluster: a\nclustr: b\n", "v.yaml:2: field clustr not found"},
		{"bad start_at", "ingest:\n  files:\n    - path: a.log\n      start_at: middle\n", `v.yaml:4: ingest.files[0].start_at: must be "beginning" or "end", got "middle"`},
		{"unknown destination type", "destinations:\n  - name: x\n    type: slak\n", `v.yaml:3: destinations[0].type: unknown type "slak"`},
		{"route to unknown destination", "destinations:\n  - {name: a, type: stdout}\nroutes:\n  - to: [b]\n", `v.yaml:4: routes[0].to[0]: unknown destination "b"`},
		{"bad severity", "destinations:\n  - {name: a, type: stdout}\nroutes:\n  - match: {severity: [urgent]}\n    to: [a]\n", `routes[0].match.severity[0]: unknown severity "urgent"`},
		{"webhook without tls", "ingest:\n  webhook:\n    listen: ':8443'\n", "v.yaml:2: ingest.webhook: tls.cert and tls.key are required"},
		{"bad duration", "routes:\n  - group_wait: soon\n", "v.yaml:2: cannot unmarshal !!str `soon` into time.Duration"},
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

func TestLoadResolvesPathsRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(p, []byte("data_dir: data\ningest:\n  files: [{path: logs/audit.log}]\nrules: [/etc/vigil/rules, more]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") || cfg.Ingest.Files[0].Path != filepath.Join(dir, "logs/audit.log") {
		t.Errorf("paths not resolved: %s %s", cfg.DataDir, cfg.Ingest.Files[0].Path)
	}
	if cfg.Rules[0] != "/etc/vigil/rules" || cfg.Rules[1] != filepath.Join(dir, "more") {
		t.Errorf("rules paths: %v", cfg.Rules)
	}
}

func TestSecretFromEnvOrFile(t *testing.T) {
	t.Setenv("VIGIL_TEST_SECRET", "s3cret\n")
	if v, err := config.Secret("slack url", "VIGIL_TEST_SECRET", ""); err != nil || v != "s3cret" {
		t.Fatalf("env secret = %q, %v", v, err)
	}
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := config.Secret("token", "", f); err != nil || v != "tok" {
		t.Fatalf("file secret = %q, %v", v, err)
	}
	_, err := config.Secret("slack url", "VIGIL_TEST_UNSET", "")
	if err == nil || !strings.Contains(err.Error(), "VIGIL_TEST_UNSET is not set") {
		t.Fatalf("unset env error = %v", err)
	}
}
