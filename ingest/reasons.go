package ingest

// Reasons a source counts a failure to read its cloud under, in
// vigil_ingest_errors_total: a small, fixed set, whatever the service
// answers, the same for every source. ReasonPublish, counted for every
// source, is a batch JetStream did not store (it is retried).
const (
	ReasonPublish      = "publish"
	ReasonThrottled    = "throttled"
	ReasonNotFound     = "not_found"
	ReasonAccessDenied = "access_denied"
	ReasonService      = "service_error"
	ReasonRequest      = "request_failed"
)
