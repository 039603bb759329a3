// Package bus is vigil's use of NATS JetStream: the streams, consumers and
// key-value buckets, the embedded server, and connection options.
package bus

import "strings"

// Streams, subjects, consumers and buckets. These names are part of the
// deployment contract: processes of different versions share them.
const (
	StreamAudit  = "AUDIT"
	StreamAlerts = "ALERTS"
	StreamDead   = "DEAD"

	// SubjectAuditPrefix + "<cluster>.events" carries audit events.
	SubjectAuditPrefix = "audit."
	// SubjectAlertsPrefix + "<severity>.<ruleID>" carries alerts.
	SubjectAlertsPrefix = "alerts"
	// Dead letters: "dead.ingest.<cluster>", "dead.engine", "dead.notify.<destination>".
	SubjectDeadPrefix = "dead."

	// ConsumerEngine is the durable pull consumer all workers share.
	ConsumerEngine = "engine"
	// ConsumerNotifyPrefix + destination name is each destination's consumer.
	ConsumerNotifyPrefix = "notify-"

	BucketThresholds = "vigil_thresholds"
	BucketNotify     = "vigil_notify"
	BucketSilences   = "vigil_silences"
	// BucketRuleState holds what first-seen rules learned, per entity. It
	// has no TTL: a value is forgotten by the rule, up to a year later.
	BucketRuleState = "vigil_rule_state"
	// BucketCursors holds where each polling source (EKS) has read to,
	// and BucketLeases which replica of it polls.
	BucketCursors = "vigil_ingest_cursors"
	BucketLeases  = "vigil_ingest_leases"
	// BucketSources holds when each ingest source last stored an event,
	// and whether the silence since has been alerted.
	BucketSources = "vigil_ingest_sources"

	// Headers on published messages.
	HeaderCluster = "Vigil-Cluster"
	HeaderSource  = "Vigil-Source"
	HeaderReason  = "Vigil-Reason"
)

// KVStream is the name of the stream that holds a key-value bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// AuditSubject is the subject of a cluster's audit events.
func AuditSubject(cluster string) string {
	return SubjectAuditPrefix + Token(cluster) + ".events"
}

// DeadSubject is a dead-letter subject, e.g. DeadSubject("ingest", "prod").
func DeadSubject(parts ...string) string {
	for i := range parts {
		parts[i] = Token(parts[i])
	}
	return SubjectDeadPrefix + strings.Join(parts, ".")
}

// Token makes s safe as one NATS subject token: no dots, wildcards or
// spaces.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}
