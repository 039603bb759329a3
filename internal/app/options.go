package app

import (
	"time"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/ingest/eks"
	"github.com/vigil-k8s/vigil/ingest/file"
	"github.com/vigil-k8s/vigil/ingest/webhook"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/rules"
)

// This file maps the YAML configuration onto the options of each
// component: only cmd/, internal/app and internal/config know the schema.

func tlsFiles(t config.TLS) tlsconfig.Files {
	return tlsconfig.Files{CA: t.CA, Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA}
}

// streamOptions size the streams and buckets. Only processes that evaluate
// rules bound the threshold bucket (engine.max_threshold_groups), so that
// an ingest or notify process with another engine section cannot undo it.
func streamOptions(cfg *config.Config, roles Role) bus.StreamOptions {
	o := bus.StreamOptions{
		Replicas:        cfg.NATS.Replicas,
		MaxAge:          cfg.NATS.MaxAge,
		MaxBytes:        cfg.NATS.MaxBytes,
		DuplicateWindow: cfg.NATS.DuplicateWindow,
	}
	if roles&RoleWorker != 0 {
		o.MaxThresholdGroups = maxThresholdGroups(cfg)
	}
	return o
}

// segmentOptions bound the segments the webhook stores.
func segmentOptions(n config.NATS) bus.SegmentOptions {
	return bus.SegmentOptions{Events: n.SegmentMaxEvents, Bytes: n.SegmentMaxBytes}
}

// maxThresholdGroups is engine.max_threshold_groups, defaulted for a
// configuration built in code rather than parsed.
func maxThresholdGroups(cfg *config.Config) int {
	if n := cfg.Engine.MaxThresholdGroups; n > 0 {
		return n
	}
	return engine.DefaultMaxThresholdGroups
}

// natsPassword reads nats.password_env or nats.password_file, "" without
// nats.user.
func natsPassword(n config.NATS) (string, error) {
	if n.User == "" {
		return "", nil
	}
	return config.Secret("nats password", n.PasswordEnv, n.PasswordFile)
}

// natsCredentials are what this process presents to an external NATS.
func natsCredentials(n config.NATS) (bus.Credentials, error) {
	pw, err := natsPassword(n)
	if err != nil {
		return bus.Credentials{}, err
	}
	return bus.Credentials{CredsFile: n.CredsFile, NKeyFile: n.NKeyFile, User: n.User, Password: pw, TLS: tlsFiles(n.TLS)}, nil
}

// listenSecurity is what the embedded server requires of its clients.
func listenSecurity(n config.NATS) (bus.ListenSecurity, error) {
	pw, err := natsPassword(n)
	if err != nil {
		return bus.ListenSecurity{}, err
	}
	return bus.ListenSecurity{Listen: n.Listen, User: n.User, Password: pw, NKeyFile: n.NKeyFile, TLS: tlsFiles(n.TLS)}, nil
}

func fileOptions(f config.FileSource, dataDir string, m *metrics.Metrics) file.Options {
	return file.Options{
		Path:         f.Path,
		StartAt:      f.StartAt,
		MaxLineBytes: f.MaxLineBytes,
		MaxJSONDepth: f.MaxJSONDepth,
		PollInterval: f.PollInterval,
		DataDir:      dataDir,
		Metrics:      m,
	}
}

func webhookOptions(w config.Webhook, m *metrics.Metrics) webhook.Options {
	return webhook.Options{
		Listen:          w.Listen,
		TLS:             tlsFiles(w.TLS),
		BearerTokenFile: w.BearerTokenFile,
		Insecure:        w.Insecure,
		MaxBodyBytes:    w.MaxBodyBytes,
		MaxEvents:       w.MaxEvents,
		MaxBadItems:     w.MaxBadItems,
		MaxJSONDepth:    w.MaxJSONDepth,
		MaxConcurrent:   w.MaxConcurrent,
		ReadTimeout:     w.ReadTimeout,
		WriteTimeout:    w.WriteTimeout,
		IdleTimeout:     w.IdleTimeout,
		Metrics:         m,
	}
}

func eksOptions(s config.Source, m *metrics.Metrics) eks.Options {
	var overlap time.Duration // nil, in a configuration built in code: the default
	if s.Overlap != nil {
		overlap = *s.Overlap
		if overlap == 0 {
			overlap = -1 // the configuration's 0 is none; eks.Options' 0 is its default
		}
	}
	return eks.Options{
		Cluster:      s.Cluster,
		Region:       s.Region,
		LogGroup:     s.LogGroup,
		StreamPrefix: s.StreamPrefix,
		PollInterval: s.PollInterval,
		Overlap:      overlap,
		StartAt:      s.StartAt,
		Endpoint:     s.Endpoint,
		Metrics:      m,
	}
}

func workerOptions(e config.Engine, m *metrics.Metrics) engine.WorkerOptions {
	return engine.WorkerOptions{
		AckWait:       e.AckWait,
		MaxDeliver:    e.MaxDeliver,
		MaxAckPending: e.MaxAckPending,
		FetchBatch:    e.FetchBatch,
		AlertLimits:   alert.Limits{FieldBytes: e.MaxAlertFieldBytes, SourceIPs: e.MaxAlertSourceIPs},
		Metrics:       m,
	}
}

// ruleOptions are the rule files of cfg with its limits on what one
// evaluation may cost (engine.max_rule_cost, engine.max_object_bytes), each
// object over the limit counted in vigil_limit_exceeded_total.
func (a *App) ruleOptions(cfg *config.Config) rules.LoadOptions {
	return rules.LoadOptions{
		Paths:   cfg.Rules,
		Default: cfg.UseDefaultRules(),
		Limits: rules.Limits{
			Cost:        cfg.Engine.MaxRuleCost,
			ObjectBytes: cfg.Engine.MaxObjectBytes,
		},
		Metrics: a.metrics,
	}
}

// routes maps the configured routes onto notify's.
func routes(rs []config.Route) []notify.Route {
	out := make([]notify.Route, len(rs))
	for i, r := range rs {
		out[i] = notify.Route{
			Match: notify.Match{
				Severity:  r.Match.Severity,
				Rules:     r.Match.Rules,
				Tags:      r.Match.Tags,
				Cluster:   r.Match.Cluster,
				Namespace: r.Match.Namespace,
				User:      r.Match.User,
				Resource:  r.Match.Resource,
				When:      r.Match.When,
			},
			To:             r.To,
			GroupBy:        r.GroupBy,
			GroupWait:      r.GroupWait,
			GroupInterval:  r.GroupInterval,
			RepeatInterval: r.RepeatInterval,
			Continue:       r.Continue,
		}
	}
	return out
}
