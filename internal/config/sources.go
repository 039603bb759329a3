package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/ingest/eks"
)

// Source types.
const (
	// SourceEKS reads an EKS cluster's audit log from CloudWatch Logs.
	SourceEKS = "eks"
	// SourceKafka reads audit records from Kafka topics (AKS through the
	// Event Hubs Kafka endpoint, self-managed pipelines).
	SourceKafka = "kafka"
	// SourceGKE reads a GKE cluster's audit log from the Pub/Sub
	// subscription its log sink feeds.
	SourceGKE = "gke"
)

// SourceTypes are the source types, in the order errors list them.
var SourceTypes = []string{SourceEKS, SourceGKE, SourceKafka}

// Source is a managed cluster's audit log, read from its cloud.
type Source struct {
	Type string `yaml:"type"`
	// Cluster is stamped on the events; the top-level cluster by default.
	// For eks, it also names the default log group.
	Cluster string `yaml:"cluster"`

	// EKS: the region and log group (/aws/eks/<cluster>/cluster), the
	// prefix of the apiserver's audit streams, how often to poll, how far
	// before the cursor each poll reads again (0: not at all), where a
	// log group without cursor is read from, and an endpoint replacing
	// CloudWatch Logs' own (a VPC endpoint).
	Region       string         `yaml:"region"`
	LogGroup     string         `yaml:"log_group"`
	StreamPrefix string         `yaml:"stream_prefix"`
	PollInterval time.Duration  `yaml:"poll_interval"`
	Overlap      *time.Duration `yaml:"overlap"`
	StartAt      string         `yaml:"start_at"`
	Endpoint     string         `yaml:"endpoint"`
	// SilentAfter overrides ingest.silent_after for this source.
	SilentAfter *Interval `yaml:"silent_after"`

	// Kafka: see KafkaSource. start_at is shared: for kafka, where a
	// group without committed offsets starts.
	KafkaSource `yaml:",inline"`

	// GKE: the subscription (an id in project, or its full name), and
	// bounds of the messages received and not yet stored; endpoint is a
	// host:port replacing Pub/Sub's.
	Project                string `yaml:"project"`
	Subscription           string `yaml:"subscription"`
	MaxOutstandingMessages int    `yaml:"max_outstanding_messages"`
	MaxOutstandingBytes    int    `yaml:"max_outstanding_bytes"`
}

// What CloudWatch Logs accepts: log group names of up to 512 of these
// characters, stream names without ':' and '*', and AWS region names.
var (
	logGroupName = regexp.MustCompile(`^[.\-_/#A-Za-z0-9]{1,512}$`)
	regionName   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

func (c *Config) setSourceDefaults() {
	for i := range c.Ingest.Sources {
		s := &c.Ingest.Sources[i]
		if s.Cluster == "" {
			s.Cluster = c.Cluster
		}
		if s.Type == SourceKafka {
			s.setKafkaDefaults()
		}
		if s.Type != SourceEKS {
			continue
		}
		if s.LogGroup == "" {
			s.LogGroup = eks.LogGroup(s.Cluster)
		}
		if s.StreamPrefix == "" {
			s.StreamPrefix = eks.DefaultStreamPrefix
		}
		if s.PollInterval == 0 {
			s.PollInterval = eks.DefaultPollInterval
		}
		if s.Overlap == nil {
			o := eks.DefaultOverlap
			s.Overlap = &o
		}
		if s.StartAt == "" {
			s.StartAt = eks.StartEnd
		}
	}
}

// validateSources checks ingest.sources, each problem at its line and
// column: "file:line:col: key: message".
func (c *Config) validateSources(root *yaml.Node, add func(error)) {
	bad := func(path []any, format string, args ...any) {
		line, col := position(root, path)
		add(fmt.Errorf("%s:%d:%d: %s: %s", c.Path, line, col, pathString(path), fmt.Sprintf(format, args...)))
	}
	polled, subscribed := map[string]int{}, map[string]int{}
	for i, s := range c.Ingest.Sources {
		p := []any{"ingest", "sources", i}
		switch s.Type {
		case SourceEKS:
		case SourceKafka:
			c.validateKafka(s, p, bad)
			continue
		case SourceGKE:
			validateGKE(s, i, p, bad, subscribed)
			continue
		case "":
			bad(p, "type is required (%s)", strings.Join(SourceTypes, ", "))
			continue
		default:
			bad(append(p, "type"), "unknown type %q (want %s)%s", s.Type, strings.Join(SourceTypes, ", "), didYouMean(s.Type, SourceTypes))
			continue
		}
		key := func(k string) []any { return append(append([]any{}, p...), k) }
		if k := s.kafkaSetting(); k != "" {
			bad(key(k), "is a kafka setting; this source is an eks one")
		}
		if s.Region != "" && !regionName.MatchString(s.Region) {
			bad(key("region"), "%q is not an AWS region (like eu-west-1)", s.Region)
		}
		if !logGroupName.MatchString(s.LogGroup) {
			bad(key("log_group"), "%q is not a CloudWatch Logs group name (up to 512 of a-z, A-Z, 0-9, '.', '-', '_', '/', '#')", s.LogGroup)
		}
		if strings.ContainsAny(s.StreamPrefix, ":*") {
			bad(key("stream_prefix"), "%q cannot start a log stream name: streams have no ':' or '*'", s.StreamPrefix)
		}
		if s.PollInterval < 0 {
			bad(key("poll_interval"), "must be positive, got %s", s.PollInterval)
		}
		// A restart re-reads the overlap, and only JetStream's MsgIDs keep
		// that harmless: it must remember them for longer.
		if o := *s.Overlap; o < 0 {
			bad(key("overlap"), "must not be negative, got %s (0 reads nothing again)", o)
		} else if o >= c.NATS.DuplicateWindow {
			bad(key("overlap"), "%s must be shorter than nats.duplicate_window (%s), within which JetStream drops the events read again", o, c.NATS.DuplicateWindow)
		}
		if s.StartAt != eks.StartEnd && s.StartAt != eks.StartBeginning {
			bad(key("start_at"), "must be %q or %q, got %q", eks.StartEnd, eks.StartBeginning, s.StartAt)
		}
		if s.Endpoint != "" && !strings.HasPrefix(s.Endpoint, "https://") && !strings.HasPrefix(s.Endpoint, "http://") {
			bad(key("endpoint"), "must be an http:// or https:// URL")
		}
		// Two sources of one log group would share one lease: one of them
		// would never poll.
		id := s.Region + "\n" + s.LogGroup + "\n" + s.StreamPrefix
		if j, dup := polled[id]; dup {
			bad(key("log_group"), "%s with stream_prefix %q is already read by ingest.sources[%d]", s.LogGroup, s.StreamPrefix, j)
		}
		polled[id] = i
	}
}

// position is the line and column of the node at path, or of the
// nearest node above it that the file has (a missing key is reported at
// its mapping).
func position(root *yaml.Node, path []any) (line, col int) {
	for i := len(path); i >= 0; i-- {
		if n, _ := locate(root, path[:i]...); n != nil {
			return n.Line, n.Column
		}
	}
	return 0, 0
}
