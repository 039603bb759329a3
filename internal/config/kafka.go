package config

import (
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-k8s/vigil/ingest/kafka"
)

// DefaultKafkaGroup is the consumer group of a kafka source without one.
const DefaultKafkaGroup = "vigil"

// KafkaSource is where a kafka source reads: the seed brokers, the topics
// and the consumer group its replicas share, where a group without
// committed offsets starts (start_at), how to authenticate and encrypt,
// and the bounds of what it buffers.
type KafkaSource struct {
	Brokers []string `yaml:"brokers"`
	Topics  []string `yaml:"topics"`
	Group   string   `yaml:"group"`
	// SASL authenticates; Event Hubs takes PLAIN with the username
	// $ConnectionString and the namespace's connection string as password.
	SASL *KafkaSASL `yaml:"sasl"`
	// TLS, when present (`tls: {}` for the system roots), encrypts the
	// connections; ca, cert and key as for other clients.
	TLS            *TLS  `yaml:"tls"`
	MaxPollRecords int   `yaml:"max_poll_records"`
	FetchMaxBytes  int32 `yaml:"fetch_max_bytes"`
}

// KafkaSASL is a SASL mechanism and its credentials: a username and a
// password (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) or a token (OAUTHBEARER),
// each secret from an environment variable or a file.
type KafkaSASL struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	TokenEnv     string `yaml:"token_env"`
	TokenFile    string `yaml:"token_file"`
}

// Kafka topic names: up to 249 of these characters.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func (s *Source) setKafkaDefaults() {
	if s.Group == "" {
		s.Group = DefaultKafkaGroup
	}
	if s.StartAt == "" {
		s.StartAt = kafka.StartEnd
	}
}

// kafkaSetting names a kafka setting given to a source of another type,
// "" when there is none.
func (s Source) kafkaSetting() string {
	k := s.KafkaSource
	switch {
	case len(k.Brokers) > 0:
		return "brokers"
	case len(k.Topics) > 0:
		return "topics"
	case k.Group != "":
		return "group"
	case k.SASL != nil:
		return "sasl"
	case k.TLS != nil:
		return "tls"
	case k.MaxPollRecords != 0:
		return "max_poll_records"
	case k.FetchMaxBytes != 0:
		return "fetch_max_bytes"
	}
	return ""
}

// eksSetting names an eks setting given to a kafka source.
func (s Source) eksSetting() string {
	switch {
	case s.Region != "":
		return "region"
	case s.LogGroup != "":
		return "log_group"
	case s.StreamPrefix != "":
		return "stream_prefix"
	case s.PollInterval != 0:
		return "poll_interval"
	case s.Overlap != nil:
		return "overlap"
	case s.Endpoint != "":
		return "endpoint"
	}
	return ""
}

// validateKafka checks a kafka source at p.
func (c *Config) validateKafka(s Source, p []any, bad func(path []any, format string, args ...any)) {
	key := func(k ...any) []any { return append(slices.Clone(p), k...) }
	if k := s.eksSetting(); k != "" {
		bad(key(k), "is an eks setting; this source is a kafka one")
	}
	if len(s.Brokers) == 0 {
		bad(p, "kafka needs brokers (host:port of one or more seed brokers)")
	}
	for j, b := range s.Brokers {
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad(key("brokers", j), "%q is not host:port", b)
		}
	}
	if len(s.Topics) == 0 {
		bad(p, "kafka needs topics (for AKS, the event hubs of its diagnostic setting, like insights-logs-kube-audit)")
	}
	for j, t := range s.Topics {
		if !topicName.MatchString(t) {
			bad(key("topics", j), "%q is not a Kafka topic name (up to 249 of a-z, A-Z, 0-9, '.', '_', '-')", t)
		}
		if slices.Index(s.Topics, t) < j {
			bad(key("topics", j), "%q is listed twice", t)
		}
	}
	if s.StartAt != kafka.StartEnd && s.StartAt != kafka.StartBeginning {
		bad(key("start_at"), "must be %q or %q, got %q", kafka.StartEnd, kafka.StartBeginning, s.StartAt)
	}
	if s.MaxPollRecords < 0 {
		bad(key("max_poll_records"), "must be positive, got %d", s.MaxPollRecords)
	}
	// A fetch must hold at least one record of the largest Kafka allows
	// by default (1 MiB).
	if s.FetchMaxBytes != 0 && s.FetchMaxBytes < 1<<20 {
		bad(key("fetch_max_bytes"), "must be at least 1048576 (one record of Kafka's default largest size), got %d", s.FetchMaxBytes)
	}
	if s.TLS != nil && s.TLS.ClientCA != "" {
		bad(key("tls", "client_ca"), "is a server setting; a kafka source is a client (ca verifies the brokers)")
	}
	if s.TLS != nil && (s.TLS.Cert == "") != (s.TLS.Key == "") {
		bad(key("tls"), "cert and key must be set together")
	}
	if s.SASL != nil {
		validateKafkaSASL(*s.SASL, key("sasl"), bad)
	}
}

func validateKafkaSASL(a KafkaSASL, p []any, bad func(path []any, format string, args ...any)) {
	key := func(k string) []any { return append(slices.Clone(p), k) }
	mech := strings.ToUpper(a.Mechanism)
	if !slices.Contains(kafka.SASLMechanisms, mech) {
		bad(key("mechanism"), "unknown mechanism %q (want %s)", a.Mechanism, strings.Join(kafka.SASLMechanisms, ", "))
		return
	}
	password := a.PasswordEnv != "" || a.PasswordFile != ""
	token := a.TokenEnv != "" || a.TokenFile != ""
	if a.PasswordEnv != "" && a.PasswordFile != "" {
		bad(key("password_file"), "set either password_env or password_file, not both")
	}
	if a.TokenEnv != "" && a.TokenFile != "" {
		bad(key("token_file"), "set either token_env or token_file, not both")
	}
	if mech == kafka.SASLOAuthBearer {
		if !token {
			bad(p, "OAUTHBEARER needs token_env or token_file")
		}
		if a.Username != "" || password {
			bad(p, "OAUTHBEARER takes a token, not username and password")
		}
		return
	}
	if a.Username == "" {
		bad(key("username"), "%s needs username (for Event Hubs: $ConnectionString)", mech)
	}
	if !password {
		bad(p, "%s needs password_env or password_file", mech)
	}
	if token {
		bad(p, "%s takes username and password, not a token", mech)
	}
}
