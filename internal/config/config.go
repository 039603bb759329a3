// Package config is vigil's configuration file: its schema, defaults and
// validation. Secrets are never in the file itself; it names environment
// variables or files that hold them.
package config

import (
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// Cluster is stamped on every event and alert.
	Cluster string `yaml:"cluster"`
	// DataDir holds the embedded NATS store and the file checkpoints.
	DataDir string `yaml:"data_dir"`
	NATS    NATS   `yaml:"nats"`
	Ingest  Ingest `yaml:"ingest"`
	Engine  Engine `yaml:"engine"`
	Notify  Notify `yaml:"notify"`
	// DefaultRules loads the embedded default pack; nil means true.
	DefaultRules *bool `yaml:"default_rules"`
	// Rules are more rule files or folders, loaded together with the pack.
	Rules        []string      `yaml:"rules"`
	Destinations []Destination `yaml:"destinations"`
	Routes       []Route       `yaml:"routes"`
	Metrics      Metrics       `yaml:"metrics"`
	Log          Log           `yaml:"log"`
	Reload       Reload        `yaml:"reload"`

	// Path is the file this configuration was read from ("" when built in code).
	Path string `yaml:"-"`
}

// UseDefaultRules reports whether the embedded rule pack is loaded.
func (c *Config) UseDefaultRules() bool { return c.DefaultRules == nil || *c.DefaultRules }

// NATS says where JetStream is: an external cluster (URL) or the embedded
// server (URL empty).
//
// With URL, the credentials and TLS are what vigil presents to that NATS.
// With the embedded server they are what its listener (Listen) requires:
// clients must log in as User with the password, or sign with the nkey
// whose seed is NKeyFile; TLS.Cert/Key are the server's identity and
// TLS.ClientCA, when set, requires client certificates. vigil's own
// in-process connections use the same credentials.
type NATS struct {
	URL string `yaml:"url"`
	// Listen, with the embedded server, also serves it to other vigil
	// processes (e.g. "0.0.0.0:4222"). Empty: in-process clients only.
	Listen string `yaml:"listen"`
	// Insecure lets the embedded server listen on an address other
	// machines can reach without authentication (a trusted network only).
	Insecure  bool   `yaml:"insecure"`
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	// PasswordEnv / PasswordFile hold the password for User.
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	TLS          TLS    `yaml:"tls"`
	// Replicas of the streams: 1 embedded, 3 on a cluster.
	Replicas int `yaml:"replicas"`
	// MaxAge and MaxBytes bound the AUDIT stream.
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// DuplicateWindow is JetStream's MsgID de-duplication window; it must
	// outlast any redelivery.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// SegmentMaxEvents and SegmentMaxBytes bound a segment, the batch of
	// events the webhook stores as one AUDIT message; the server's
	// max_payload bounds it too.
	SegmentMaxEvents int `yaml:"segment_max_events"`
	SegmentMaxBytes  int `yaml:"segment_max_bytes"`
}

// TLS is a certificate set. For clients: CA verifies the server, Cert/Key
// are the client identity. For servers: Cert/Key are the server identity and
// ClientCA, when set, requires and verifies client certificates.
type TLS struct {
	CA       string `yaml:"ca"`
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled reports whether any TLS material is configured.
func (t TLS) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" || t.ClientCA != "" }

// Ingest lists the sources.
type Ingest struct {
	Files   []FileSource `yaml:"files"`
	Webhook *Webhook     `yaml:"webhook"`
	// Sources are the sources that read a managed cluster's audit log
	// from its cloud, by type (SourceEKS, SourceKafka).
	Sources []Source `yaml:"sources"`
	// SilentAfter is how long a source may store no event before it is
	// alerted (audit-source-silent); off never. Each source may override
	// it with its own silent_after.
	SilentAfter *Interval `yaml:"silent_after"`
}

// FileSource is an audit log written by kube-apiserver's --audit-log-path.
type FileSource struct {
	// Path is a file or a glob (one log per apiserver).
	Path string `yaml:"path"`
	// Cluster overrides the top-level cluster for this source.
	Cluster string `yaml:"cluster"`
	// StartAt is where a file with no checkpoint is read from:
	// "beginning" or "end" (file.StartBeginning, file.StartEnd).
	StartAt string `yaml:"start_at"`
	// MaxLineBytes is the longest line accepted; longer ones are dead-lettered.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxJSONDepth bounds the nesting of one event (line); deeper is
	// dead-lettered. At most 10,000, encoding/json's limit.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// PollInterval is how often the file is checked when idle.
	PollInterval time.Duration `yaml:"poll_interval"`
	// SilentAfter overrides ingest.silent_after for this file or glob.
	SilentAfter *Interval `yaml:"silent_after"`
}

// Webhook is the receiver for kube-apiserver's audit webhook backend.
type Webhook struct {
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// BearerTokenFile, when set, requires "Authorization: Bearer <token>".
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Insecure allows plain HTTP without TLS (local use only).
	Insecure     bool   `yaml:"insecure"`
	Cluster      string `yaml:"cluster"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	MaxEvents    int    `yaml:"max_events"`
	// MaxBadItems is how many items of one EventList that are not audit
	// events are dead-lettered one by one; a list with more is refused.
	MaxBadItems int `yaml:"max_bad_items"`
	// MaxJSONDepth bounds the nesting of one event (an item, counted from
	// the item); deeper is dead-lettered. At most 10,000.
	MaxJSONDepth  int `yaml:"max_json_depth"`
	MaxConcurrent int `yaml:"max_concurrent"`
	// Timeouts of the HTTP server.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// SilentAfter overrides ingest.silent_after for the webhook.
	SilentAfter *Interval `yaml:"silent_after"`
}

// Engine tunes the workers and their JetStream consumer.
type Engine struct {
	// Workers is the number of evaluation goroutines in one process.
	Workers       int           `yaml:"workers"`
	AckWait       time.Duration `yaml:"ack_wait"`
	MaxDeliver    int           `yaml:"max_deliver"`
	MaxAckPending int           `yaml:"max_ack_pending"`
	// FetchBatch is how many messages (events or segments) one pull
	// fetches; MaxAckPending counts messages too.
	FetchBatch int `yaml:"fetch_batch"`
	// MaxThresholdGroups bounds the threshold groups (rule and group-by
	// values) kept in the JetStream KV bucket; past it the least recently
	// updated group is forgotten.
	MaxThresholdGroups int `yaml:"max_threshold_groups"`
	// MaxAlertFieldBytes bounds each string field of an alert (output,
	// user, name, user agent, …); longer ones are cut, ending in "…".
	MaxAlertFieldBytes int `yaml:"max_alert_field_bytes"`
	// MaxAlertSourceIPs bounds the sourceIPs an alert copies from its
	// event.
	MaxAlertSourceIPs int `yaml:"max_alert_source_ips"`
	// MaxRuleCost bounds the CEL cost of one evaluation of a condition,
	// output, threshold key or macro; past it the rule does not match and
	// an error is counted for it.
	MaxRuleCost uint64 `yaml:"max_rule_cost"`
	// MaxObjectBytes bounds the requestObject or responseObject rules
	// decode; a larger one reads as absent.
	MaxObjectBytes int `yaml:"max_object_bytes"`
}

// Notify tunes delivery.
type Notify struct {
	AckWait    time.Duration `yaml:"ack_wait"`
	MaxDeliver int           `yaml:"max_deliver"`
	// MaxAge bounds how long an alert is retried before it is dead-lettered.
	MaxAge time.Duration `yaml:"max_age"`
}

// Destination types.
const (
	DestinationSlack   = "slack"
	DestinationWebhook = "webhook"
	DestinationStdout  = "stdout"
	// DestinationAlertmanager posts to Prometheus Alertmanager's API v2.
	DestinationAlertmanager = "alertmanager"
	// DestinationPagerDuty sends PagerDuty Events API v2 trigger events.
	DestinationPagerDuty = "pagerduty"
)

// DestinationTypes are the destination types, in the order errors list
// them.
var DestinationTypes = []string{DestinationSlack, DestinationWebhook, DestinationAlertmanager, DestinationPagerDuty, DestinationStdout}

// Destination is where alerts are delivered.
type Destination struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`

	// Slack: an incoming webhook URL, or a bot token and a channel.
	WebhookURLEnv  string `yaml:"webhook_url_env"`
	WebhookURLFile string `yaml:"webhook_url_file"`
	TokenEnv       string `yaml:"token_env"`
	TokenFile      string `yaml:"token_file"`
	Channel        string `yaml:"channel"`
	// APIURL overrides Slack's API base URL (proxies, tests).
	APIURL string `yaml:"api_url"`

	// Webhook: the URL (or an env/file holding it when it carries a token).
	// Alertmanager: the URL of one Alertmanager. PagerDuty: the Events API
	// endpoint, when not PagerDuty's own.
	URL            string            `yaml:"url"`
	URLEnv         string            `yaml:"url_env"`
	URLFile        string            `yaml:"url_file"`
	Headers        map[string]string `yaml:"headers"`
	HMACSecretEnv  string            `yaml:"hmac_secret_env"`
	HMACSecretFile string            `yaml:"hmac_secret_file"`
	// TLS (webhook, alertmanager): ca verifies the receiver, cert and key
	// are the client certificate.
	TLS TLS `yaml:"tls"`

	// Alertmanager: every instance of an HA cluster (instead of url), all
	// of which receive every alert; basic auth (username with
	// password_env/password_file) or a bearer token; the generatorURL
	// template ({rule}, {id}, {auditID}, {cluster}); how long after sending
	// an alert resolves.
	URLs            []string      `yaml:"urls"`
	Username        string        `yaml:"username"`
	PasswordEnv     string        `yaml:"password_env"`
	PasswordFile    string        `yaml:"password_file"`
	BearerTokenEnv  string        `yaml:"bearer_token_env"`
	BearerTokenFile string        `yaml:"bearer_token_file"`
	GeneratorURL    string        `yaml:"generator_url"`
	ResolveAfter    time.Duration `yaml:"resolve_after"`

	// PagerDuty: the integration's routing key, and the client shown in
	// PagerDuty's alert view.
	RoutingKeyEnv  string `yaml:"routing_key_env"`
	RoutingKeyFile string `yaml:"routing_key_file"`
	Client         string `yaml:"client"`
	ClientURL      string `yaml:"client_url"`

	// Stdout: "text" (default) or "json".
	Format string `yaml:"format"`

	Timeout time.Duration `yaml:"timeout"`
	// RateLimit is messages per second; 0 means the type's default.
	RateLimit float64 `yaml:"rate_limit"`
	// MaxAttempts bounds retries before the alert is dead-lettered.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxTextChars (Slack) bounds the characters of each text of a message
	// (the section, the context, the fallback); 0: Slack's own limits.
	MaxTextChars int `yaml:"max_text_chars"`
}

// Route sends matching alerts to destinations. The first matching route
// wins unless it says Continue.
type Route struct {
	Match          Match         `yaml:"match"`
	To             []string      `yaml:"to"`
	GroupBy        []string      `yaml:"group_by"`
	GroupWait      time.Duration `yaml:"group_wait"`
	GroupInterval  time.Duration `yaml:"group_interval"`
	RepeatInterval time.Duration `yaml:"repeat_interval"`
	Continue       bool          `yaml:"continue"`
}

// Match selects alerts; empty lists match everything, and an alert must
// satisfy every non-empty list and when. Lists compare values exactly.
type Match struct {
	Severity  []string `yaml:"severity"`
	Rules     []string `yaml:"rules"`
	Tags      []string `yaml:"tags"`
	Cluster   []string `yaml:"cluster"`
	Namespace []string `yaml:"namespace"`
	User      []string `yaml:"user"`
	Resource  []string `yaml:"resource"`
	// When is a CEL condition over the alert, as a silence's --when;
	// compiled when the file is loaded.
	When string `yaml:"when"`
}

// Metrics is the Prometheus and health endpoint.
type Metrics struct {
	Listen string `yaml:"listen"`
	// BearerTokenFile, when set, makes /metrics answer only requests with
	// "Authorization: Bearer <token>"; /healthz and /readyz stay open for
	// probes. Re-read when it changes.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLS, with cert and key, serves HTTPS (TLS 1.2+) instead of HTTP;
	// client_ca also makes /metrics require a client certificate signed by
	// it (the probes stay open). The files are re-read when they change.
	TLS TLS `yaml:"tls"`
}

// Reload says how rule and route changes are picked up without a restart
// (SIGHUP always reloads).
type Reload struct {
	// Watch polls the config file and rule files for changes; nil means true.
	Watch *bool `yaml:"watch"`
	// Interval is how often they are polled.
	Interval time.Duration `yaml:"interval"`
}

// Watching reports whether files are polled for changes.
func (r Reload) Watching() bool { return r.Watch == nil || *r.Watch }

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}
