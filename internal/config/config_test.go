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

func TestParseLimitDefaultsAndKeys(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte("cluster: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Engine
	if e.MaxRuleCost != 1_000_000 || e.MaxObjectBytes != 4<<20 {
		t.Errorf("rule limit defaults = cost %d, object %d bytes; want 1000000, 4 MiB", e.MaxRuleCost, e.MaxObjectBytes)
	}
	if e.MaxThresholdGroups != 100_000 || e.MaxAlertFieldBytes != 8<<10 || e.MaxAlertSourceIPs != 16 {
		t.Errorf("engine limit defaults = %d groups, %d bytes, %d source IPs; want 100000, 8192, 16", e.MaxThresholdGroups, e.MaxAlertFieldBytes, e.MaxAlertSourceIPs)
	}
	cfg, err = config.Parse("v.yaml", []byte(`
engine: {max_threshold_groups: 500, max_alert_field_bytes: 1024, max_alert_source_ips: 4, max_rule_cost: 5000, max_object_bytes: 65536}
metrics: {listen: ":9090", tls: {cert: m.crt, key: m.key, client_ca: ca.crt}}
nats: {listen: "0.0.0.0:4222", user: vigil, password_file: pw, tls: {cert: n.crt, key: n.key}, segment_max_events: 16, segment_max_bytes: 65536}
`))
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Engine; e.MaxThresholdGroups != 500 || e.MaxAlertFieldBytes != 1024 || e.MaxAlertSourceIPs != 4 || e.MaxRuleCost != 5000 || e.MaxObjectBytes != 65536 {
		t.Errorf("engine limits = %+v", e)
	}
	if cfg.NATS.SegmentMaxEvents != 16 || cfg.NATS.SegmentMaxBytes != 65536 {
		t.Errorf("segment bounds = %d events, %d bytes", cfg.NATS.SegmentMaxEvents, cfg.NATS.SegmentMaxBytes)
	}
	if cfg.Metrics.TLS.ClientCA != "ca.crt" || cfg.NATS.TLS.Cert != "n.crt" {
		t.Errorf("tls not read: metrics %+v nats %+v", cfg.Metrics.TLS, cfg.NATS.TLS)
	}
}

func TestParseLimitAndTransportErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"negative segment events", "nats:\n  segment_max_events: -1\n", "v.yaml:2: nats.segment_max_events: must be between 1 and 10000, got -1"},
		{"tiny segments", "nats:\n  replicas: 1\n  segment_max_bytes: 100\n", "v.yaml:3: nats.segment_max_bytes: must be between 4096 and 67108864, got 100"},
		{"negative group bound", "engine:\n  max_threshold_groups: -1\n", "v.yaml:2: engine.max_threshold_groups: must be positive"},
		{"tiny alert fields", "engine:\n  max_alert_field_bytes: 10\n", "v.yaml:2: engine.max_alert_field_bytes: must be at least 256"},
		{"too many source IPs", "engine:\n  max_alert_source_ips: 1000\n", "v.yaml:2: engine.max_alert_source_ips: must be between 1 and 256"},
		{"slack text too long", "destinations:\n  - name: s\n    type: slack\n    webhook_url_env: X\n    max_text_chars: 5000\n", "v.yaml:5: destinations[0].max_text_chars: must be between 200 and 3000"},
		{"text limit on a webhook", "destinations:\n  - name: w\n    type: webhook\n    url: http://x\n    max_text_chars: 500\n", "v.yaml:5: destinations[0].max_text_chars: only applies to slack destinations"},
		{"json depth too large", "ingest:\n  webhook:\n    listen: ':8443'\n    insecure: true\n    max_json_depth: 20000\n", "v.yaml:5: ingest.webhook.max_json_depth: must be between 8 and 10000"},
		{"json depth too small", "ingest:\n  files:\n    - path: a.log\n      max_json_depth: 2\n", "v.yaml:4: ingest.files[0].max_json_depth: must be between 8 and 10000"},
		{"rule cost too low", "engine:\n  max_rule_cost: 10\n", "v.yaml:2: engine.max_rule_cost: must be at least 1000"},
		{"object limit too large", "engine:\n  max_object_bytes: 1000000000\n", "v.yaml:2: engine.max_object_bytes: must be between 1 and 67108864"},
		{"alert larger than a NATS message", "engine:\n  max_alert_field_bytes: 65536\n  max_alert_source_ips: 64\n", "v.yaml:2: engine.max_alert_field_bytes: 65536 bytes for each of 79 fields"},
		{"metrics key without cert", "metrics:\n  listen: ':9090'\n  tls:\n    key: m.key\n", "v.yaml:3: metrics.tls: cert and key must be set together"},
		{"metrics client_ca without cert", "metrics:\n  listen: ':9090'\n  tls:\n    client_ca: ca.crt\n", "v.yaml:4: metrics.tls.client_ca: needs tls.cert and tls.key"},
		{"metrics tls without listen", "metrics:\n  tls: {cert: a, key: b}\n", "v.yaml:2: metrics.tls: needs metrics.listen"},
		{"embedded listen open to all without auth", "nats:\n  listen: 0.0.0.0:4222\n", `v.yaml:2: nats.listen: "0.0.0.0:4222" is reachable from other machines`},
		{"embedded listen on all interfaces, empty host", "nats:\n  listen: ':4222'\n", `v.yaml:2: nats.listen: ":4222" is reachable from other machines`},
		{"embedded with creds_file", "nats:\n  listen: 127.0.0.1:4222\n  creds_file: x.creds\n", "v.yaml:3: nats.creds_file: applies to an external NATS"},
		{"embedded with tls.ca", "nats:\n  listen: 127.0.0.1:4222\n  tls: {ca: ca.crt, cert: a, key: b}\n", "v.yaml:3: nats.tls.ca: verifies an external NATS"},
		{"embedded tls without listen", "nats:\n  tls: {cert: a, key: b}\n", "v.yaml:2: nats.tls: applies to nats.url or to the embedded server's nats.listen"},
		{"user without password", "nats:\n  url: nats://n:4222\n  user: vigil\n", "v.yaml:3: nats.user: needs password_env or password_file"},
		{"client_ca with url", "nats:\n  url: nats://n:4222\n  tls: {client_ca: ca.crt}\n", "v.yaml:3: nats.tls.client_ca: only applies to the embedded server"},
		{"insecure with url", "nats:\n  url: nats://n:4222\n  insecure: true\n", "v.yaml:3: nats.insecure: only applies to the embedded server"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("v.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
	// What is accepted: loopback without auth, and any address with auth
	// or an explicit insecure.
	for _, ok := range []string{
		"nats: {listen: '127.0.0.1:4222'}",
		"nats: {listen: 'localhost:4222'}",
		"nats: {listen: '[::1]:4222'}",
		"nats: {listen: '0.0.0.0:4222', user: vigil, password_env: NATS_PW}",
		"nats: {listen: '0.0.0.0:4222', nkey_file: vigil.nk}",
		"nats: {listen: '0.0.0.0:4222', insecure: true}",
		"nats: {url: 'tls://n:4222', creds_file: x.creds, tls: {ca: ca.crt}}",
	} {
		if _, err := config.Parse("v.yaml", []byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestLoadResolvesTLSPathsOfMetrics(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(p, []byte("metrics: {listen: ':9090', tls: {cert: m.crt, key: m.key}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.TLS.Cert != filepath.Join(dir, "m.crt") {
		t.Errorf("metrics.tls.cert = %s", cfg.Metrics.TLS.Cert)
	}
}
