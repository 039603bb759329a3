// Package metrics defines vigil's Prometheus metrics. One Metrics value is
// built per process on a registry and handed to each component in its
// options; nothing is registered globally. A component given none makes
// its own with New(nil), so it never checks whether it has metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "vigil"

// Metrics are vigil's metrics. The names are documented in
// docs/operations.md and used by deploy/grafana-dashboard.json.
type Metrics struct {
	// Ingest. IngestDuplicates counts the events a source published that
	// AUDIT already held, which JetStream dropped: a metric of its own
	// rather than a label of IngestEvents, so that summing IngestEvents
	// still counts each stored event once.
	IngestEvents     *prometheus.CounterVec   // source, cluster
	IngestDuplicates *prometheus.CounterVec   // source, cluster
	IngestMalformed  *prometheus.CounterVec   // source
	DeadLetters      *prometheus.CounterVec   // stage: ingest, engine, notify
	PublishDuration  *prometheus.HistogramVec // source
	CheckpointOffset *prometheus.GaugeVec     // path
	WebhookRequests  *prometheus.CounterVec   // code
	LimitExceeded    *prometheus.CounterVec   // limit
	// Sources: how far behind the newest stored event is (every source);
	// what failed while reading, what the cloud cut or delivered late.
	IngestLag        *prometheus.GaugeVec   // source, cluster
	IngestLastEvent  *prometheus.GaugeVec   // source, cluster
	IngestErrors     *prometheus.CounterVec // source, cluster, reason
	IngestTruncated  *prometheus.CounterVec // source, cluster
	IngestLateEvents *prometheus.CounterVec // source, cluster

	// Engine.
	EventsEvaluated    prometheus.Counter
	RuleMatches        *prometheus.CounterVec // rule
	RuleErrors         *prometheus.CounterVec // rule
	RuleExceptions     *prometheus.CounterVec // rule, exception
	AlertsSuppressed   *prometheus.CounterVec // rule
	RuleEvalSeconds    *prometheus.CounterVec // rule
	AlertsPublished    *prometheus.CounterVec // rule, severity
	ThresholdEvicted   prometheus.Counter
	TermsEvicted       *prometheus.CounterVec // rule
	StateEntities      prometheus.Gauge
	StateEvicted       prometheus.Counter
	FutureEvents       prometheus.Counter
	ThresholdGroups    prometheus.Gauge
	RulesInfo          *prometheus.GaugeVec // version
	ConsumerPending    *prometheus.GaugeVec // consumer
	ConsumerAckPending *prometheus.GaugeVec // consumer

	// Notification delivery, by destination.
	NotifyDelivered  *prometheus.CounterVec
	NotifyFailures   *prometheus.CounterVec
	NotifyDead       *prometheus.CounterVec
	NotifyDuplicates *prometheus.CounterVec
	NotifyTruncated  *prometheus.CounterVec
	// AlertsSilenced counts each alert a silence kept from destinations
	// once, however many destinations or notifiers it was kept from.
	AlertsSilenced *prometheus.CounterVec // rule

	// ReloadFailures counts rejected reloads by what was rejected
	// (ReloadConfig, ReloadRules, ReloadRoutes).
	ReloadFailures *prometheus.CounterVec // what
}

// What a rejected reload was rejected for, the label of ReloadFailures.
const (
	// ReloadConfig: the configuration file did not load (routes' when
	// conditions are compiled with it).
	ReloadConfig = "config"
	// ReloadRules: the rule files did not compile.
	ReloadRules = "rules"
	// ReloadRoutes: the dispatcher refused the routes (a destination it
	// does not run).
	ReloadRoutes = "routes"
)

// New creates the metrics and registers them, with the Go and process
// collectors, on reg; with reg nil they are registered nowhere.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		IngestEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_events_total",
			Help: "Audit events stored on the AUDIT stream, new to it, by source and cluster."}, []string{"source", "cluster"}),
		IngestDuplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_duplicates_total",
			Help: "Audit events published that the AUDIT stream already held under the same message id, dropped by JetStream, by source and cluster."}, []string{"source", "cluster"}),
		IngestMalformed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_malformed_total",
			Help: "Input lines or items that were not valid audit events, by source."}, []string{"source"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "dead_letters_total",
			Help: "Messages moved to the DEAD stream, by pipeline stage."}, []string{"stage"}),
		PublishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "publish_duration_seconds",
			Help: "Time from publishing a batch of events to its JetStream acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"source"}),
		CheckpointOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "file_checkpoint_offset_bytes",
			Help: "Offset of the durable checkpoint in each tailed file."}, []string{"path"}),
		WebhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "webhook_requests_total",
			Help: "Audit webhook requests, by HTTP status code."}, []string{"code"}),
		LimitExceeded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "limit_exceeded_total",
			Help: "Inputs refused or cut because a configured limit was reached, by limit."}, []string{"limit"}),
		IngestLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "ingest_lag_seconds",
			Help: "Time from the newest stored event's own time to when it was stored, by source and cluster."}, []string{"source", "cluster"}),
		IngestLastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "ingest_last_event_timestamp_seconds",
			Help: "Own time of the newest event stored, as a Unix time, by source and cluster."}, []string{"source", "cluster"}),
		IngestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_errors_total",
			Help: "Failed requests of a source to where it reads from, retried, by source, cluster and reason."}, []string{"source", "cluster", "reason"}),
		IngestTruncated: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_truncated_total",
			Help: "Events the log service cut to its size limit, dead-lettered, by source and cluster."}, []string{"source", "cluster"}),
		IngestLateEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "ingest_late_events_total",
			Help: "Events the log service made visible after newer ones had been read, caught by the overlap window, by source and cluster."}, []string{"source", "cluster"}),
		EventsEvaluated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "engine_events_total",
			Help: "Audit events evaluated by the rule engine."}),
		RuleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_matches_total",
			Help: "Rule condition matches, by rule."}, []string{"rule"}),
		RuleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_errors_total",
			Help: "Rule evaluation errors (counted as no match), by rule."}, []string{"rule"}),
		RuleExceptions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_exceptions_total",
			Help: "Rule matches an exception suppressed, by rule and exception."}, []string{"rule", "exception"}),
		AlertsSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "alerts_suppressed_total",
			Help: "Rule matches a suppression window held back, by rule."}, []string{"rule"}),
		RuleEvalSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_eval_seconds_total",
			Help: "Time spent evaluating each rule."}, []string{"rule"}),
		AlertsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "alerts_published_total",
			Help: "Alerts stored on the ALERTS stream, by rule and severity."}, []string{"rule", "severity"}),
		FutureEvents: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "engine_future_events_total",
			Help: "Events whose own time is ahead of when they were stored: the writing apiserver's clock runs ahead. Their threshold windows use the stored time."}),
		ThresholdEvicted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "threshold_groups_evicted_total",
			Help: "Threshold groups dropped because the group limit (engine.max_threshold_groups) was reached; with JetStream KV, the groups this process created while the bucket was full."}),
		TermsEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "new_terms_values_evicted_total",
			Help: "Values a first-seen rule forgot before their time because an entity showed more than its max_values; each may alert again as new."}, []string{"rule"}),
		StateEntities: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "rule_state_entities",
			Help: "Entities first-seen rules keep state for, in the rule state bucket, as last read."}),
		StateEvicted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "rule_state_entities_evicted_total",
			Help: "Entities of first-seen rules the rule state bucket dropped at its limit (engine.max_threshold_groups); each learns afresh."}),
		ThresholdGroups: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "threshold_groups",
			Help: "Threshold groups held in the JetStream KV bucket, polled by each worker process."}),
		RulesInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "rules_info",
			Help: "The rule set this process runs (1 for the current version hash)."}, []string{"version"}),
		ConsumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "consumer_pending_messages",
			Help: "Messages not yet delivered to a durable consumer (its lag)."}, []string{"consumer"}),
		ConsumerAckPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "consumer_ack_pending_messages",
			Help: "Messages delivered to a durable consumer and not yet acknowledged."}, []string{"consumer"}),
		NotifyDelivered:  notifyCounter("delivered_alerts_total", "Alerts delivered to a destination."),
		NotifyFailures:   notifyCounter("failed_attempts_total", "Delivery attempts that failed."),
		NotifyDead:       notifyCounter("dead_letters_total", "Alerts given up on and published to the dead-letter stream."),
		NotifyDuplicates: notifyCounter("duplicates_skipped_total", "Redelivered alerts not sent again because they were already delivered."),
		NotifyTruncated:  notifyCounter("truncated_texts_total", "Messages delivered with at least one text cut to fit the destination's limits."),
		AlertsSilenced: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "alerts_silenced_total",
			Help: "Alerts a silence kept from destinations, by rule; each alert once, however many destinations or notifiers."}, []string{"rule"}),
		ReloadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "reload_failures_total",
			Help: "Reloads rejected, the running rules and routes kept, by what was rejected: config, rules or routes."}, []string{"what"}),
	}
	// Shown at 0 from the start, so that an alert on an increase fires on
	// the first rejection too.
	for _, w := range []string{ReloadConfig, ReloadRules, ReloadRoutes} {
		m.ReloadFailures.WithLabelValues(w)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(
		m.IngestEvents, m.IngestDuplicates, m.IngestMalformed, m.DeadLetters, m.PublishDuration, m.CheckpointOffset, m.WebhookRequests, m.LimitExceeded,
		m.IngestLag, m.IngestLastEvent, m.IngestErrors, m.IngestTruncated, m.IngestLateEvents,
		m.EventsEvaluated, m.RuleMatches, m.RuleErrors, m.RuleExceptions, m.AlertsSuppressed, m.RuleEvalSeconds, m.AlertsPublished, m.ThresholdEvicted, m.TermsEvicted, m.StateEntities, m.StateEvicted, m.ThresholdGroups, m.FutureEvents, m.RulesInfo,
		m.ConsumerPending, m.ConsumerAckPending,
		m.NotifyDelivered, m.NotifyFailures, m.NotifyDead, m.NotifyDuplicates, m.NotifyTruncated, m.AlertsSilenced,
		m.ReloadFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func notifyCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "notify", Name: name, Help: help}, []string{"destination"})
}
