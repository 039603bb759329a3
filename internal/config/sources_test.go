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
		{"no type", "ingest:\n  sources:\n    - region: eu-west-1\n", "v.yaml:3:7: ingest.sources[0]: type is required (eks, gke, kafka)"},
		{"misspelt type", "ingest:\n  sources:\n    - type: ekss\n", `v.yaml:3:13: ingest.sources[0].type: unknown type "ekss" (want eks, gke, kafka), did you mean "eks"?`},
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

func TestGKESource(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte("cluster: prod\ningest:\n  sources:\n    - {type: gke, project: my-project-1, subscription: vigil-audit, max_outstanding_messages: 200}\n"+
		"    - {type: gke, subscription: projects/other-proj/subscriptions/audit, endpoint: 'europe-west1-pubsub.googleapis.com:443', cluster: b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Ingest.Sources[0]; s.Cluster != "prod" || s.Project != "my-project-1" || s.Subscription != "vigil-audit" || s.MaxOutstandingMessages != 200 || s.Overlap != nil {
		t.Errorf("gke source not as written: %+v", s)
	}
}

// TestGKESourceErrorsNameLineAndColumn: each problem of a gke source is
// placed at the value (or, for a missing key, the item) it is about.
func TestGKESourceErrorsNameLineAndColumn(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"no subscription", "ingest:\n  sources:\n    - {type: gke, project: my-project}\n", "v.yaml:3:7: ingest.sources[0].subscription: subscription is required"},
		{"no project", "ingest:\n  sources:\n    - {type: gke, subscription: vigil}\n", `v.yaml:3:33: ingest.sources[0].subscription: project is required with the subscription id "vigil"`},
		{"topic for subscription", "ingest:\n  sources:\n    - {type: gke, subscription: projects/p-123456/topics/t}\n", `v.yaml:3:33: ingest.sources[0].subscription: subscription "projects/p-123456/topics/t" is neither an id nor`},
		{"bad id", "ingest:\n  sources:\n    - {type: gke, project: my-project, subscription: 'goog sub'}\n", `ingest.sources[0].subscription: "goog sub" is not a Pub/Sub subscription id`},
		{"bad project", "ingest:\n  sources:\n    - {type: gke, project: My_Project, subscription: vigil}\n", `v.yaml:3:28: ingest.sources[0].project: "My_Project" is not a Google Cloud project id`},
		{"eks setting", "ingest:\n  sources:\n    - type: gke\n      project: my-project\n      subscription: vigil\n      log_group: /aws/eks/x/cluster\n", "v.yaml:6:18: ingest.sources[0].log_group: is an eks setting"},
		{"negative bound", "ingest:\n  sources:\n    - {type: gke, project: my-project, subscription: vigil, max_outstanding_bytes: -1}\n", "ingest.sources[0].max_outstanding_bytes: must be positive, got -1"},
		{"url endpoint", "ingest:\n  sources:\n    - {type: gke, project: my-project, subscription: vigil, endpoint: 'https://pubsub.googleapis.com'}\n", "ingest.sources[0].endpoint: \"https://pubsub.googleapis.com\" must be host:port"},
		{"same subscription twice", "ingest:\n  sources:\n    - {type: gke, project: my-project, subscription: vigil}\n    - {type: gke, subscription: projects/my-project/subscriptions/vigil}\n",
			"v.yaml:4:33: ingest.sources[1].subscription: projects/my-project/subscriptions/vigil is already read by ingest.sources[0]"},
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
