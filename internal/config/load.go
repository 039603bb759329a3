package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/ingest/file"
	"github.com/vigil-k8s/vigil/ingest/webhook"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/notify/alertmanager"
	"github.com/vigil-k8s/vigil/notify/slack"
	"github.com/vigil-k8s/vigil/rules"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// Defaults of what only this file configures: where vigil runs. The
// defaults of each component are the component's own (file.Default…,
// engine.Default…, notify.Default…); Parse fills them in so that a loaded configuration
// shows the values in effect.
const (
	DefaultCluster        = "default"
	DefaultDataDir        = "./data"
	DefaultReloadInterval = 5 * time.Second
)

// Bounds of values the components would accept but that make no sense to
// configure.
const (
	// MinJSONDepth is the smallest max_json_depth: an audit event's own
	// fields go 3 levels deep, and bodies need a few more.
	MinJSONDepth = 8
	// MinAlertFieldBytes is the smallest engine.max_alert_field_bytes: an
	// alert cut shorter would not say what happened.
	MinAlertFieldBytes = 256
	// MaxAlertSourceIPs is the largest engine.max_alert_source_ips.
	MaxAlertSourceIPs = 256
	// MinRuleCost is the smallest engine.max_rule_cost: below it even
	// simple conditions over a few fields would fail.
	MinRuleCost = 1_000
	// MaxObjectBytesLimit is the largest engine.max_object_bytes: a NATS
	// message (1 MiB by default, 64 MiB at most) cannot carry more.
	MaxObjectBytesLimit = 64 << 20
)

// Load reads, defaults and validates a configuration file. Relative paths
// in it are taken relative to the file's folder, as kubeconfig does, so
// that a config works from any working directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// Parse decodes, defaults and validates configuration text; name is used
// in error messages. Paths are left as written.
func Parse(name string, data []byte) (*Config, error) {
	cfg := &Config{Path: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	cfg.setDefaults()
	if errs := cfg.validate(&root, data); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Bounds of the segment options: a segment of more events holds more
// memory per unacknowledged message, and one under a few KiB would hold
// one event.
const (
	maxSegmentEvents = 10_000
	minSegmentBytes  = 4 << 10
)

func (c *Config) setDefaults() {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	n := &c.NATS
	if n.Replicas == 0 {
		n.Replicas = 1
	}
	if n.MaxAge == 0 {
		n.MaxAge = bus.DefaultStreamMaxAge
	}
	if n.DuplicateWindow == 0 {
		n.DuplicateWindow = bus.DefaultDuplicateWindow
	}
	if n.SegmentMaxEvents == 0 {
		n.SegmentMaxEvents = bus.DefaultSegmentEvents
	}
	if n.SegmentMaxBytes == 0 {
		n.SegmentMaxBytes = bus.DefaultSegmentBytes
	}
	for i := range c.Ingest.Files {
		f := &c.Ingest.Files[i]
		if f.StartAt == "" {
			f.StartAt = file.StartBeginning
		}
		if f.MaxJSONDepth == 0 {
			f.MaxJSONDepth = audit.MaxDepth
		}
		if f.MaxLineBytes == 0 {
			f.MaxLineBytes = file.DefaultMaxLineBytes
		}
		if f.PollInterval == 0 {
			f.PollInterval = file.DefaultPollInterval
		}
		if f.Cluster == "" {
			f.Cluster = c.Cluster
		}
	}
	if w := c.Ingest.Webhook; w != nil {
		if w.MaxBodyBytes == 0 {
			w.MaxBodyBytes = webhook.DefaultMaxBodyBytes
		}
		if w.MaxEvents == 0 {
			w.MaxEvents = webhook.DefaultMaxEvents
		}
		if w.MaxBadItems == 0 {
			w.MaxBadItems = webhook.DefaultMaxBadItems
		}
		if w.MaxJSONDepth == 0 {
			w.MaxJSONDepth = audit.MaxDepth
		}
		if w.MaxConcurrent == 0 {
			w.MaxConcurrent = webhook.DefaultMaxConcurrent
		}
		if w.ReadTimeout == 0 {
			w.ReadTimeout = webhook.DefaultReadTimeout
		}
		if w.WriteTimeout == 0 {
			w.WriteTimeout = webhook.DefaultWriteTimeout
		}
		if w.IdleTimeout == 0 {
			w.IdleTimeout = webhook.DefaultIdleTimeout
		}
		if w.Cluster == "" {
			w.Cluster = c.Cluster
		}
	}
	c.setSourceDefaults()
	c.setSilentDefaults()
	e := &c.Engine
	if e.Workers == 0 {
		e.Workers = 1
	}
	if e.AckWait == 0 {
		e.AckWait = engine.DefaultAckWait
	}
	if e.MaxDeliver == 0 {
		e.MaxDeliver = engine.DefaultMaxDeliver
	}
	if e.MaxAckPending == 0 {
		e.MaxAckPending = engine.DefaultMaxAckPending
	}
	if e.FetchBatch == 0 {
		e.FetchBatch = engine.DefaultFetchBatch
	}
	if e.MaxThresholdGroups == 0 {
		e.MaxThresholdGroups = engine.DefaultMaxThresholdGroups
	}
	if e.MaxAlertFieldBytes == 0 {
		e.MaxAlertFieldBytes = alert.MaxFieldBytes
	}
	if e.MaxAlertSourceIPs == 0 {
		e.MaxAlertSourceIPs = alert.MaxSourceIPs
	}
	if e.MaxRuleCost == 0 {
		e.MaxRuleCost = rules.PerRuleCostLimit
	}
	if e.MaxObjectBytes == 0 {
		e.MaxObjectBytes = rules.MaxObjectBytes
	}
	if c.Notify.AckWait == 0 {
		c.Notify.AckWait = notify.DefaultAckWait
	}
	if c.Notify.MaxDeliver == 0 {
		c.Notify.MaxDeliver = notify.DefaultMaxAttempts
	}
	if c.Notify.MaxAge == 0 {
		c.Notify.MaxAge = notify.DefaultMaxAge
	}
	for i := range c.Destinations {
		d := &c.Destinations[i]
		if d.Timeout == 0 {
			d.Timeout = notify.DefaultTimeout
		}
		if d.Type == DestinationAlertmanager && d.ResolveAfter == 0 {
			d.ResolveAfter = alertmanager.DefaultResolveAfter
		}
	}
	if c.Reload.Interval == 0 {
		c.Reload.Interval = DefaultReloadInterval
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

// validate checks the decoded config; root gives line numbers, and data,
// the file's text, columns inside expressions.
func (c *Config) validate(root *yaml.Node, data []byte) []error {
	var errs []error
	bad := func(path []any, format string, args ...any) {
		loc := c.Path
		if line := lineOf(root, path...); line > 0 {
			loc = fmt.Sprintf("%s:%d", c.Path, line)
		}
		errs = append(errs, fmt.Errorf("%s: %s: %s", loc, pathString(path), fmt.Sprintf(format, args...)))
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad([]any{"nats", "replicas"}, "must be between 1 and 5, got %d", c.NATS.Replicas)
	}
	if c.NATS.URL != "" && c.NATS.Listen != "" {
		bad([]any{"nats", "listen"}, "only applies to the embedded server; remove it or nats.url")
	}
	if n := c.NATS.SegmentMaxEvents; n < 1 || n > maxSegmentEvents {
		bad([]any{"nats", "segment_max_events"}, "must be between 1 and %d, got %d", maxSegmentEvents, n)
	}
	// A segment is one NATS message, and no server takes more than 64 MiB.
	if n := c.NATS.SegmentMaxBytes; n < minSegmentBytes || n > 64<<20 {
		bad([]any{"nats", "segment_max_bytes"}, "must be between %d and %d, got %d", minSegmentBytes, 64<<20, n)
	}
	c.validateNATS(bad)
	for i, f := range c.Ingest.Files {
		if f.Path == "" {
			bad([]any{"ingest", "files", i}, "path is required")
		}
		if f.StartAt != file.StartBeginning && f.StartAt != file.StartEnd {
			bad([]any{"ingest", "files", i, "start_at"}, "must be %q or %q, got %q", file.StartBeginning, file.StartEnd, f.StartAt)
		}
		if f.MaxLineBytes < 0 {
			bad([]any{"ingest", "files", i, "max_line_bytes"}, "must be positive")
		}
		if f.MaxJSONDepth < MinJSONDepth || f.MaxJSONDepth > audit.MaxDepth {
			bad([]any{"ingest", "files", i, "max_json_depth"}, "must be between %d and %d, got %d", MinJSONDepth, audit.MaxDepth, f.MaxJSONDepth)
		}
	}
	if w := c.Ingest.Webhook; w != nil {
		if w.Listen == "" {
			bad([]any{"ingest", "webhook"}, "listen is required")
		}
		if !w.Insecure && (w.TLS.Cert == "" || w.TLS.Key == "") {
			bad([]any{"ingest", "webhook"}, "tls.cert and tls.key are required (or insecure: true for plain HTTP on a trusted network)")
		}
		if w.MaxBodyBytes < 0 || w.MaxEvents < 0 || w.MaxConcurrent < 0 || w.MaxBadItems < 0 {
			bad([]any{"ingest", "webhook"}, "limits must be positive")
		}
		if w.MaxJSONDepth < MinJSONDepth || w.MaxJSONDepth > audit.MaxDepth {
			bad([]any{"ingest", "webhook", "max_json_depth"}, "must be between %d and %d, got %d", MinJSONDepth, audit.MaxDepth, w.MaxJSONDepth)
		}
	}
	c.validateSources(root, func(err error) { errs = append(errs, err) })
	c.validateSilent(root, func(err error) { errs = append(errs, err) })
	c.validateEngine(bad)
	if t := c.Metrics.TLS; t.Enabled() {
		if (t.Cert == "") != (t.Key == "") {
			bad([]any{"metrics", "tls"}, "cert and key must be set together")
		}
		if t.ClientCA != "" && t.Cert == "" {
			bad([]any{"metrics", "tls", "client_ca"}, "needs tls.cert and tls.key: client certificates only exist with TLS")
		}
		if t.CA != "" {
			bad([]any{"metrics", "tls", "ca"}, "is for clients; the metrics endpoint is a server (tls.client_ca requires client certificates)")
		}
		if c.Metrics.Listen == "" {
			bad([]any{"metrics", "tls"}, "needs metrics.listen")
		}
	}
	names := map[string]bool{}
	for i, d := range c.Destinations {
		p := []any{"destinations", i}
		if d.Name == "" {
			bad(p, "name is required")
		} else if names[d.Name] {
			bad(append(p, "name"), "duplicate destination name %q", d.Name)
		}
		names[d.Name] = true
		c.validateDestination(p, d, bad)
		if d.RateLimit < 0 || d.MaxAttempts < 0 {
			bad(p, "rate_limit and max_attempts must not be negative")
		}
		if d.MaxTextChars != 0 {
			switch {
			case d.Type != DestinationSlack:
				bad(append(p, "max_text_chars"), "only applies to slack destinations")
			case d.MaxTextChars < slack.MinTextChars || d.MaxTextChars > slack.MaxTextChars:
				bad(append(p, "max_text_chars"), "must be between %d and %d (Slack's limit), got %d", slack.MinTextChars, slack.MaxTextChars, d.MaxTextChars)
			}
		}
	}
	c.validateRoutes(root, data, names, bad, func(err error) { errs = append(errs, err) })
	if c.Reload.Interval < 0 {
		bad([]any{"reload", "interval"}, "must be positive (use watch: false to stop watching)")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad([]any{"log", "level"}, "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad([]any{"log", "format"}, "must be text or json, got %q", c.Log.Format)
	}
	return errs
}

// validateDestination checks one destination's type and the settings of
// its type, and that no setting of another type is given.
func (c *Config) validateDestination(p []any, d Destination, bad func(path []any, format string, args ...any)) {
	types := strings.Join(DestinationTypes[:len(DestinationTypes)-1], ", ") + " or " + DestinationTypes[len(DestinationTypes)-1]
	secret := func(name, env, file string) {
		if env != "" && file != "" {
			bad(append(p, name+"_file"), "set either %s_env or %s_file, not both", name, name)
		}
	}
	httpURL := func(u string, key ...any) {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			bad(append(slices.Clone(p), key...), "must be an http:// or https:// URL")
		}
	}
	switch d.Type {
	case DestinationSlack:
		hasURL := d.WebhookURLEnv != "" || d.WebhookURLFile != ""
		hasToken := d.TokenEnv != "" || d.TokenFile != ""
		if hasURL == hasToken {
			bad(p, "slack needs either webhook_url_env/webhook_url_file or token_env/token_file with channel")
		}
		if hasToken && d.Channel == "" {
			bad(p, "slack with a bot token needs channel")
		}
	case DestinationWebhook:
		if (d.URL != "") == (d.URLEnv != "" || d.URLFile != "") {
			bad(p, "webhook needs exactly one of url, url_env, url_file")
		}
		httpURL(d.URL, "url")
	case DestinationAlertmanager:
		if (d.URL != "") == (len(d.URLs) > 0) {
			bad(p, "alertmanager needs url (one Alertmanager) or urls (every instance of a cluster), not both")
		}
		httpURL(d.URL, "url")
		for j, u := range d.URLs {
			httpURL(u, "urls", j)
		}
		hasPassword := d.PasswordEnv != "" || d.PasswordFile != ""
		secret("password", d.PasswordEnv, d.PasswordFile)
		secret("bearer_token", d.BearerTokenEnv, d.BearerTokenFile)
		switch {
		case d.Username != "" && !hasPassword:
			bad(append(p, "username"), "needs password_env or password_file")
		case d.Username == "" && hasPassword:
			bad(p, "password_env/password_file need username")
		}
		if (d.Username != "" || hasPassword) && (d.BearerTokenEnv != "" || d.BearerTokenFile != "") {
			bad(p, "set either basic auth (username, password_env/password_file) or bearer_token_env/bearer_token_file, not both")
		}
		httpURL(d.GeneratorURL, "generator_url")
		if d.ResolveAfter < 0 {
			bad(append(p, "resolve_after"), "must be positive, got %s", d.ResolveAfter)
		}
	case DestinationPagerDuty:
		if d.RoutingKeyEnv == "" && d.RoutingKeyFile == "" {
			bad(p, "pagerduty needs routing_key_env or routing_key_file (the integration key of an Events API v2 integration)")
		}
		secret("routing_key", d.RoutingKeyEnv, d.RoutingKeyFile)
		httpURL(d.URL, "url")
		httpURL(d.ClientURL, "client_url")
	case DestinationStdout:
		if d.Format != "" && d.Format != "text" && d.Format != "json" {
			bad(append(p, "format"), "must be text or json, got %q", d.Format)
		}
	case "":
		bad(p, "type is required (%s)", types)
	default:
		msg := fmt.Sprintf("unknown type %q (want %s)", d.Type, types)
		if s := parse.Suggest(d.Type, DestinationTypes); s != "" {
			msg += fmt.Sprintf(", did you mean %q?", s)
		}
		bad(append(p, "type"), "%s", msg)
		return
	}
	// Settings of one type given to another are mistakes, not options.
	only := func(typ string, set map[string]bool) {
		if d.Type == typ {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(set)) {
			if set[k] {
				bad(append(p, k), "only applies to %s destinations", typ)
			}
		}
	}
	only(DestinationAlertmanager, map[string]bool{
		"urls": len(d.URLs) > 0, "username": d.Username != "", "password_env": d.PasswordEnv != "", "password_file": d.PasswordFile != "",
		"bearer_token_env": d.BearerTokenEnv != "", "bearer_token_file": d.BearerTokenFile != "",
		"generator_url": d.GeneratorURL != "", "resolve_after": d.ResolveAfter != 0,
	})
	only(DestinationPagerDuty, map[string]bool{
		"routing_key_env": d.RoutingKeyEnv != "", "routing_key_file": d.RoutingKeyFile != "", "client": d.Client != "", "client_url": d.ClientURL != "",
	})
	if d.TLS.Enabled() && d.Type != DestinationWebhook && d.Type != DestinationAlertmanager {
		bad(append(p, "tls"), "only applies to webhook and alertmanager destinations")
	}
}

// validateNATS checks the credentials and TLS in nats, whose meaning
// depends on whether vigil connects to an external NATS (url) or runs the
// embedded server (see config.NATS).
func (c *Config) validateNATS(bad func(path []any, format string, args ...any)) {
	n := c.NATS
	if n.User != "" && n.PasswordEnv == "" && n.PasswordFile == "" {
		bad([]any{"nats", "user"}, "needs password_env or password_file")
	}
	if n.User == "" && (n.PasswordEnv != "" || n.PasswordFile != "") {
		bad([]any{"nats"}, "password_env/password_file need user")
	}
	if n.PasswordEnv != "" && n.PasswordFile != "" {
		bad([]any{"nats", "password_file"}, "set either password_env or password_file, not both")
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		bad([]any{"nats", "tls"}, "cert and key must be set together")
	}
	if n.URL != "" {
		if n.TLS.ClientCA != "" {
			bad([]any{"nats", "tls", "client_ca"}, "only applies to the embedded server's nats.listen; a client presents tls.cert and tls.key")
		}
		if n.Insecure {
			bad([]any{"nats", "insecure"}, "only applies to the embedded server's nats.listen")
		}
		return
	}
	if n.CredsFile != "" {
		bad([]any{"nats", "creds_file"}, "applies to an external NATS (nats.url); the embedded server takes nats.user with password_env/password_file, or nats.nkey_file")
	}
	if n.TLS.CA != "" {
		bad([]any{"nats", "tls", "ca"}, "verifies an external NATS (nats.url); the embedded server's listener uses tls.cert, tls.key and tls.client_ca")
	}
	if n.Listen == "" {
		if n.TLS.Cert != "" || n.TLS.ClientCA != "" {
			bad([]any{"nats", "tls"}, "applies to nats.url or to the embedded server's nats.listen; neither is set")
		}
		if n.Insecure {
			bad([]any{"nats", "insecure"}, "only applies with nats.listen")
		}
		return
	}
	if n.TLS.ClientCA != "" && n.TLS.Cert == "" {
		bad([]any{"nats", "tls", "client_ca"}, "needs tls.cert and tls.key: client certificates only exist with TLS")
	}
	if !bus.LoopbackOnly(n.Listen) && n.User == "" && n.NKeyFile == "" && !n.Insecure {
		bad([]any{"nats", "listen"}, "%q is reachable from other machines, and anyone reaching it could read every audit event and forge or drop alerts: "+
			"set nats.user with password_env/password_file, or nats.nkey_file (with nats.tls.cert/key), "+
			"or insecure: true to serve it without authentication on a trusted network", n.Listen)
	}
}

func (c *Config) validateEngine(bad func(path []any, format string, args ...any)) {
	e := c.Engine
	if e.MaxThresholdGroups < 0 {
		bad([]any{"engine", "max_threshold_groups"}, "must be positive, got %d", e.MaxThresholdGroups)
	}
	if e.MaxRuleCost < MinRuleCost {
		bad([]any{"engine", "max_rule_cost"}, "must be at least %d, got %d", MinRuleCost, e.MaxRuleCost)
	}
	if e.MaxObjectBytes < 1 || e.MaxObjectBytes > MaxObjectBytesLimit {
		bad([]any{"engine", "max_object_bytes"}, "must be between 1 and %d (64 MiB), got %d", MaxObjectBytesLimit, e.MaxObjectBytes)
	}
	fieldsOK := true
	if e.MaxAlertFieldBytes < MinAlertFieldBytes {
		bad([]any{"engine", "max_alert_field_bytes"}, "must be at least %d, got %d", MinAlertFieldBytes, e.MaxAlertFieldBytes)
		fieldsOK = false
	}
	if e.MaxAlertSourceIPs < 1 || e.MaxAlertSourceIPs > MaxAlertSourceIPs {
		bad([]any{"engine", "max_alert_source_ips"}, "must be between 1 and %d, got %d", MaxAlertSourceIPs, e.MaxAlertSourceIPs)
		fieldsOK = false
	}
	if l := (alert.Limits{FieldBytes: e.MaxAlertFieldBytes, SourceIPs: e.MaxAlertSourceIPs}); fieldsOK && l.Bytes() > alert.MaxBoundedBytes {
		bad([]any{"engine", "max_alert_field_bytes"}, "%d bytes for each of %d fields (with max_alert_source_ips %d) is %d KiB, more than the %d KiB an alert may take in a NATS message",
			e.MaxAlertFieldBytes, l.Fields(), e.MaxAlertSourceIPs, l.Bytes()>>10, alert.MaxBoundedBytes>>10)
	}
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Metrics.BearerTokenFile)
	abs(&c.NATS.CredsFile)
	abs(&c.NATS.NKeyFile)
	abs(&c.NATS.PasswordFile)
	absTLS := func(t *TLS) { abs(&t.CA); abs(&t.Cert); abs(&t.Key); abs(&t.ClientCA) }
	absTLS(&c.NATS.TLS)
	absTLS(&c.Metrics.TLS)
	for i := range c.Rules {
		abs(&c.Rules[i])
	}
	for i := range c.Ingest.Files {
		abs(&c.Ingest.Files[i].Path)
	}
	if w := c.Ingest.Webhook; w != nil {
		absTLS(&w.TLS)
		abs(&w.BearerTokenFile)
	}
	for i := range c.Destinations {
		d := &c.Destinations[i]
		abs(&d.WebhookURLFile)
		abs(&d.TokenFile)
		abs(&d.URLFile)
		abs(&d.HMACSecretFile)
		abs(&d.PasswordFile)
		abs(&d.BearerTokenFile)
		abs(&d.RoutingKeyFile)
		absTLS(&d.TLS)
	}
}

// lineOf finds the line of a node by its path of mapping keys and sequence
// indexes; 0 when not found.
func lineOf(n *yaml.Node, path ...any) int {
	_, line := locate(n, path...)
	return line
}

// locate finds the node at a path of mapping keys and sequence indexes,
// and its line; when the path goes further than the file, the node is nil
// and the line the last one found on the way (0 for none).
func locate(n *yaml.Node, path ...any) (*yaml.Node, int) {
	if n == nil {
		return nil, 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next = n.Content[i+1]
						line = n.Content[i].Line
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return nil, line
		}
		n = next
	}
	return n, line
}

func pathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

// yamlError renders a YAML decoding error as "file:line: message", one
// line per problem, the form editors and CI annotate.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, m, ok := strings.Cut(rest, ":"); ok {
				return fmt.Errorf("%s:%s:%s", name, n, m)
			}
		}
		return fmt.Errorf("%s: %s", name, msg)
	}
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		if rest, ok := strings.CutPrefix(e, "line "); ok {
			if n, m, ok := strings.Cut(rest, ":"); ok {
				errs = append(errs, fmt.Errorf("%s:%s:%s", name, n, m))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %s", name, e))
	}
	return errors.Join(errs...)
}
