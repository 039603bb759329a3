package pagerduty

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Limits of the Events API v2.
const (
	// MaxSummary is the most characters of payload.summary.
	MaxSummary = 1024
	// MaxDedupKey is the most characters of dedup_key.
	MaxDedupKey = 255
	// MaxEventBytes is the largest event PagerDuty accepts.
	MaxEventBytes = 512 << 10
)

// Event is a trigger event of the Events API v2
// (POST https://events.pagerduty.com/v2/enqueue).
type Event struct {
	RoutingKey  string  `json:"routing_key"`
	EventAction string  `json:"event_action"`
	DedupKey    string  `json:"dedup_key"`
	Payload     Payload `json:"payload"`
	Client      string  `json:"client,omitempty"`
	ClientURL   string  `json:"client_url,omitempty"`
	Links       []Link  `json:"links,omitempty"`
}

// Payload is what PagerDuty shows of the event: summary, source and
// severity are required.
type Payload struct {
	Summary       string `json:"summary"`
	Source        string `json:"source"`
	Severity      string `json:"severity"`
	Timestamp     string `json:"timestamp,omitempty"`
	Component     string `json:"component,omitempty"`
	Group         string `json:"group,omitempty"`
	Class         string `json:"class,omitempty"`
	CustomDetails any    `json:"custom_details,omitempty"`
}

// Link is a link shown with the alert in PagerDuty.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// PagerDuty's severities.
const (
	SeverityCritical = "critical"
	SeverityError    = "error"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Severity maps vigil's five severities onto PagerDuty's four: critical and
// high become critical and error, which PagerDuty's dynamic urgency pages
// for; medium and low are both warnings; info stays info.
func Severity(s string) string {
	switch s {
	case alert.SeverityCritical:
		return SeverityCritical
	case alert.SeverityHigh:
		return SeverityError
	case alert.SeverityMedium, alert.SeverityLow:
		return SeverityWarning
	}
	return SeverityInfo
}

// DedupKey is the alert's id, so that a redelivered or resent alert is one
// PagerDuty alert. An id longer than PagerDuty takes keeps its rule and
// replaces the rest by its SHA-256.
func DedupKey(id string) string {
	if len(id) <= MaxDedupKey {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:])
	rule, _, _ := strings.Cut(id, "/")
	if len(rule) > MaxDedupKey-len(h)-1 {
		return h
	}
	return rule + "/" + h
}

// Summary is the one line PagerDuty pages with:
// "[HIGH] <title>: <output>", cut to MaxSummary characters.
func Summary(a *alert.Alert) string {
	s := fmt.Sprintf("[%s] %s: %s", strings.ToUpper(a.Severity), a.Title, a.Output)
	if a.Window != "" {
		s += fmt.Sprintf(" [%d in %s]", a.Count, a.Window)
	}
	return cut(s, MaxSummary)
}

// cut shortens s to n characters, ending in "…".
func cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Build makes the trigger event of one alert. source is the cluster, where
// the request was made; component the object; group its namespace; class
// the rule. custom_details is the alert in its JSON shape, the one a
// webhook receives, so every field of it reaches PagerDuty.
func Build(a *alert.Alert, routingKey, client, clientURL string) Event {
	obj := a.Resource
	if a.Subresource != "" {
		obj += "/" + a.Subresource
	}
	if name := strings.Trim(a.Namespace+"/"+a.Name, "/"); name != "" {
		obj += " " + name
	}
	source := a.Cluster
	if source == "" {
		source = "vigil"
	}
	var links []Link
	if a.RunbookURL != "" {
		links = append(links, Link{Href: a.RunbookURL, Text: "Runbook: " + a.Rule})
	}
	return Event{
		Links:       links,
		RoutingKey:  routingKey,
		EventAction: "trigger",
		DedupKey:    DedupKey(a.ID),
		Client:      client,
		ClientURL:   clientURL,
		Payload: Payload{
			Summary:       Summary(a),
			Source:        cut(source, MaxSummary),
			Severity:      Severity(a.Severity),
			Timestamp:     a.Time.UTC().Format(time.RFC3339Nano),
			Component:     cut(obj, MaxSummary),
			Group:         cut(a.Namespace, MaxSummary),
			Class:         a.Rule,
			CustomDetails: a,
		},
	}
}

// Body encodes ev. An event larger than PagerDuty accepts keeps its
// summary and identity and loses its custom details, replaced by a note
// saying so: PagerDuty would refuse it whole, and no retry could help.
func Body(ev Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("pagerduty: encode event: %w", err)
	}
	if len(b) <= MaxEventBytes {
		return b, nil
	}
	a, _ := ev.Payload.CustomDetails.(*alert.Alert)
	details := map[string]any{"note": fmt.Sprintf("the alert's details were removed: the event was %d bytes, more than PagerDuty's %d", len(b), MaxEventBytes)}
	if a != nil {
		details["id"], details["rule"], details["auditID"] = a.ID, a.Rule, a.AuditID
	}
	ev.Payload.CustomDetails = details
	if b, err = json.Marshal(ev); err != nil {
		return nil, fmt.Errorf("pagerduty: encode event: %w", err)
	}
	return b, nil
}
