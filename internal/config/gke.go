package config

import (
	"net"
	"regexp"
	"strings"

	"github.com/vigil-k8s/vigil/ingest/gke"
)

// What Pub/Sub accepts: subscription ids of 3 to 255 of these characters,
// starting with a letter, and project ids (optionally domain-scoped).
var (
	subscriptionID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)
	projectID      = regexp.MustCompile(`^([a-z][a-z0-9.\-]*[a-z0-9]:)?[a-z][a-z0-9\-]{4,28}[a-z0-9]$`)
)

// validateGKE checks the gke source i, at p; subscribed maps each subscription
// read to the source reading it.
func validateGKE(s Source, i int, p []any, bad func(path []any, format string, args ...any), subscribed map[string]int) {
	key := func(k string) []any { return append(append([]any{}, p...), k) }
	for _, f := range []struct {
		key string
		set bool
	}{
		{"region", s.Region != ""}, {"log_group", s.LogGroup != ""}, {"stream_prefix", s.StreamPrefix != ""},
		{"poll_interval", s.PollInterval != 0}, {"overlap", s.Overlap != nil}, {"start_at", s.StartAt != ""},
	} {
		if f.set {
			bad(key(f.key), "is an eks setting; a gke source reads what its subscription holds")
		}
	}
	project, id, err := gke.SubscriptionName(s.Project, s.Subscription)
	switch {
	case err != nil:
		bad(key("subscription"), "%v", err)
	case !subscriptionID.MatchString(id):
		bad(key("subscription"), "%q is not a Pub/Sub subscription id (3 to 255 letters, digits or -_.~+%%, starting with a letter)", id)
	case !projectID.MatchString(project):
		bad(key("project"), "%q is not a Google Cloud project id (like my-project-123)", project)
	}
	if s.MaxOutstandingMessages < 0 {
		bad(key("max_outstanding_messages"), "must be positive, got %d", s.MaxOutstandingMessages)
	}
	if s.MaxOutstandingBytes < 0 {
		bad(key("max_outstanding_bytes"), "must be positive, got %d", s.MaxOutstandingBytes)
	}
	if _, port, err := net.SplitHostPort(s.Endpoint); s.Endpoint != "" && (err != nil || port == "" || strings.Contains(s.Endpoint, "/")) {
		bad(key("endpoint"), "%q must be host:port (Pub/Sub's gRPC endpoint, like europe-west1-pubsub.googleapis.com:443)", s.Endpoint)
	}
	// Two sources of one subscription would share its messages, each
	// getting some: one is enough, and replicas share it anyway.
	if err == nil {
		name := "projects/" + project + "/subscriptions/" + id
		if j, dup := subscribed[name]; dup {
			bad(key("subscription"), "%s is already read by ingest.sources[%d]", name, j)
		}
		subscribed[name] = i
	}
}
