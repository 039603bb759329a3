package config_test

import (
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/config"
)

func TestKafkaSourceDefaults(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte(`cluster: aks-prod
ingest:
  sources:
    - type: kafka
      brokers: [my-ns.servicebus.windows.net:9093]
      topics: [insights-logs-kube-audit, insights-logs-kube-audit-admin]
      sasl: {mechanism: PLAIN, username: $ConnectionString, password_file: /etc/vigil/eventhubs/connection-string}
      tls: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Ingest.Sources[0]
	if s.Cluster != "aks-prod" || s.Group != "vigil" || s.StartAt != "end" || s.TLS == nil || s.SASL.Username != "$ConnectionString" {
		t.Errorf("kafka defaults not applied: %+v", s)
	}
	if s.LogGroup != "" || s.Overlap != nil {
		t.Errorf("eks defaults given to a kafka source: %+v", s)
	}
}

// TestKafkaSourceErrorsNameLineAndColumn: each problem is placed at the
// value, or for a missing key at the source.
func TestKafkaSourceErrorsNameLineAndColumn(t *testing.T) {
	const head = "ingest:\n  sources:\n    - type: kafka\n"
	const ok = "      brokers: [k:9092]\n      topics: [audit]\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"no brokers", head + "      topics: [audit]\n", "v.yaml:3:7: ingest.sources[0]: kafka needs brokers"},
		{"bad broker", head + "      brokers: [kafka, 'k:99999']\n      topics: [audit]\n", `v.yaml:4:17: ingest.sources[0].brokers[0]: "kafka" is not host:port`},
		{"bad port", head + "      brokers: ['k:99999']\n      topics: [audit]\n", `v.yaml:4:17: ingest.sources[0].brokers[0]: "k:99999" is not host:port`},
		{"no topics", head + "      brokers: [k:9092]\n", "v.yaml:3:7: ingest.sources[0]: kafka needs topics"},
		{"bad topic", head + "      brokers: [k:9092]\n      topics: [audit, 'a b']\n", `v.yaml:5:23: ingest.sources[0].topics[1]: "a b" is not a Kafka topic name`},
		{"topic twice", head + "      brokers: [k:9092]\n      topics: [audit, audit]\n", `v.yaml:5:23: ingest.sources[0].topics[1]: "audit" is listed twice`},
		{"bad start_at", head + ok + "      start_at: now\n", `v.yaml:6:17: ingest.sources[0].start_at: must be "end" or "beginning", got "now"`},
		{"eks setting", head + ok + "      log_group: /aws/eks/x/cluster\n", "v.yaml:6:18: ingest.sources[0].log_group: is an eks setting; this source is a kafka one"},
		{"kafka setting on eks", "ingest:\n  sources:\n    - type: eks\n      topics: [audit]\n", "v.yaml:4:15: ingest.sources[0].topics: is a kafka setting; this source is an eks one"},
		{"small fetch", head + ok + "      fetch_max_bytes: 1000\n", "v.yaml:6:24: ingest.sources[0].fetch_max_bytes: must be at least 1048576"},
		{"cert without key", head + ok + "      tls: {cert: c.pem}\n", "v.yaml:6:12: ingest.sources[0].tls: cert and key must be set together"},
		{"client_ca", head + ok + "      tls: {client_ca: ca.pem}\n", "ingest.sources[0].tls.client_ca: is a server setting"},
		{"unknown mechanism", head + ok + "      sasl: {mechanism: GSSAPI}\n", `v.yaml:6:25: ingest.sources[0].sasl.mechanism: unknown mechanism "GSSAPI" (want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)`},
		{"plain without username", head + ok + "      sasl: {mechanism: PLAIN, password_env: P}\n", "v.yaml:6:13: ingest.sources[0].sasl.username: PLAIN needs username (for Event Hubs: $ConnectionString)"},
		{"scram without password", head + ok + "      sasl: {mechanism: SCRAM-SHA-512, username: u}\n", "v.yaml:6:13: ingest.sources[0].sasl: SCRAM-SHA-512 needs password_env or password_file"},
		{"password twice", head + ok + "      sasl: {mechanism: PLAIN, username: u, password_env: P, password_file: p}\n", "ingest.sources[0].sasl.password_file: set either password_env or password_file, not both"},
		{"oauth without token", head + ok + "      sasl: {mechanism: oauthbearer}\n", "v.yaml:6:13: ingest.sources[0].sasl: OAUTHBEARER needs token_env or token_file"},
		{"oauth with password", head + ok + "      sasl: {mechanism: OAUTHBEARER, token_env: T, username: u, password_env: P}\n", "ingest.sources[0].sasl: OAUTHBEARER takes a token, not username and password"},
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
