package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/config"
)

func TestEKSSourceDefaults(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte("cluster: prod-eu-1\ningest:\n  sources:\n    - {type: eks, region: eu-west-1}\n    - {type: eks, cluster: staging, overlap: 0s, start_at: beginning}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Ingest.Sources[0]
	if s.Cluster != "prod-eu-1" || s.LogGroup != "/aws/eks/prod-eu-1/cluster" || s.StreamPrefix != "kube-apiserver-audit-" ||
		s.PollInterval != 10*time.Second || *s.Overlap != 30*time.Second || s.StartAt != "end" {
		t.Errorf("eks defaults not applied: %+v", s)
	}
	if s := cfg.Ingest.Sources[1]; s.LogGroup != "/aws/eks/staging/cluster" || *s.Overlap != 0 || s.StartAt != "beginning" {
		t.Errorf("eks source as written not kept: %+v", s)
	}
}

// TestEKSSourceErrorsNameLineAndColumn: each problem of ingest.sources is
// placed at the value (or, for a missing key, the item) it is about.
func TestEKSSourceErrorsNameLineAndColumn(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"no type", "ingest:\n  sources:\n    - region: eu-west-1\n", "v.yaml:3:7: ingest.sources[0]: type is required (eks, kafka)"},
		{"misspelt type", "ingest:\n  sources:\n    - type: ekss\n", `v.yaml:3:13: ingest.sources[0].type: unknown type "ekss" (want eks, kafka), did you mean "eks"?`},
		{"bad region", "ingest:\n  sources:\n    - type: eks\n      region: Ireland\n", `v.yaml:4:15: ingest.sources[0].region: "Ireland" is not an AWS region`},
		{"bad log group", "ingest:\n  sources:\n    - {type: eks, log_group: 'my group'}\n", `v.yaml:3:30: ingest.sources[0].log_group: "my group" is not a CloudWatch Logs group name`},
		{"bad prefix", "ingest:\n  sources:\n    - {type: eks, stream_prefix: 'kube-*'}\n", `ingest.sources[0].stream_prefix: "kube-*" cannot start a log stream name`},
		{"negative poll", "ingest:\n  sources:\n    - {type: eks, poll_interval: -1s}\n", "v.yaml:3:34: ingest.sources[0].poll_interval: must be positive, got -1s"},
		{"overlap past dedupe", "nats: {duplicate_window: 1m}\ningest:\n  sources:\n    - {type: eks, overlap: 5m}\n", "v.yaml:4:28: ingest.sources[0].overlap: 5m0s must be shorter than nats.duplicate_window (1m0s)"},
		{"bad start_at", "ingest:\n  sources:\n    - {type: eks, start_at: now}\n", `ingest.sources[0].start_at: must be "end" or "beginning", got "now"`},
		{"bad endpoint", "ingest:\n  sources:\n    - {type: eks, endpoint: logs.local}\n", "ingest.sources[0].endpoint: must be an http:// or https:// URL"},
		{"same log group twice", "ingest:\n  sources:\n    - {type: eks}\n    - {type: eks, log_group: /aws/eks/default/cluster}\n", `v.yaml:4:30: ingest.sources[1].log_group: /aws/eks/default/cluster with stream_prefix "kube-apiserver-audit-" is already read by ingest.sources[0]`},
		{"unknown key", "ingest:\n  sources:\n    - {type: eks, log_grup: x}\n", "v.yaml:3: field log_grup not found"},
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
