package alertmanager

import (
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Alert is one alert of Alertmanager's API v2 (POST /api/v2/alerts, the
// postableAlert of its OpenAPI spec).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// MaxLabelBytes bounds each label value. Labels are an Alertmanager
// alert's identity: they are hashed, indexed and shown in every grouping,
// so a label carries no free text and no value longer than a Kubernetes
// service account's username (system:serviceaccount:<63>:<253>). A
// longer value is cut, ending in "…".
const MaxLabelBytes = 384

// Label names. alertname is what Alertmanager's UI, its default grouping
// and most receivers' templates show; rule says the same for routes that
// match on vigil's name for it.
const (
	LabelAlertname = "alertname"
	LabelRule      = "rule"
	LabelSeverity  = "severity"
	LabelCluster   = "cluster"
	LabelNamespace = "namespace"
	LabelUser      = "user"
	LabelVerb      = "verb"
	LabelResource  = "resource"
)

// Labels are the alert's identity in Alertmanager: who did what to which
// kind of object where. Alerts with equal labels are one Alertmanager
// alert, so repeats of a rule by one user on one resource in one
// namespace are deduplicated there, while the object's name, the request
// and the rendered output, which differ from one request to the next, are
// annotations. Empty values are left out, as Prometheus does (a
// cluster-scoped object has no namespace).
func Labels(a *alert.Alert) map[string]string {
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	l := make(map[string]string, 8)
	for _, kv := range [...][2]string{
		{LabelAlertname, a.Rule},
		{LabelRule, a.Rule},
		{LabelSeverity, a.Severity},
		{LabelCluster, a.Cluster},
		{LabelNamespace, a.Namespace},
		{LabelUser, a.User},
		{LabelVerb, a.Verb},
		{LabelResource, resource},
	} {
		if v := labelValue(kv[1]); v != "" {
			l[kv[0]] = v
		}
	}
	return l
}

// labelValue makes s a valid label value, which Alertmanager requires to
// be UTF-8, of at most MaxLabelBytes.
func labelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxLabelBytes {
		return s
	}
	const mark = "…"
	n := MaxLabelBytes - len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

// Annotations are what a responder reads; Alertmanager keeps those of the
// latest repeat. summary is the rule's title, as Prometheus' conventions
// have it.
func Annotations(a *alert.Alert) map[string]string {
	an := map[string]string{
		"summary":  a.Title,
		"output":   a.Output,
		"alert_id": a.ID,
		"audit_id": a.AuditID,
		"time":     a.Time.UTC().Format(time.RFC3339Nano),
	}
	set := func(k, v string) {
		if v != "" {
			an[k] = v
		}
	}
	obj := a.Name
	if a.Namespace != "" && a.Name != "" {
		obj = a.Namespace + "/" + a.Name
	}
	set("object", obj)
	set("impersonated_user", a.ImpersonatedUser)
	set("source_ips", strings.Join(a.SourceIPs, ", "))
	set("user_agent", a.UserAgent)
	set("tags", strings.Join(a.Tags, ", "))
	if a.ResponseCode != 0 {
		an["response_code"] = strconv.FormatInt(a.ResponseCode, 10)
	}
	if a.Window != "" {
		an["count"] = strconv.Itoa(a.Count)
		an["window"] = a.Window
	}
	if a.Suppressed > 0 {
		an["suppressed"] = strconv.Itoa(a.Suppressed)
	}
	set("description", a.Description)
	set("runbook_url", a.RunbookURL)
	for k, v := range an {
		an[k] = strings.ToValidUTF8(v, "\uFFFD")
	}
	return an
}

// generatorURL fills the placeholders of a configured generator_url
// template, each value query-escaped.
func generatorURL(tmpl string, a *alert.Alert) string {
	if tmpl == "" {
		return ""
	}
	return strings.NewReplacer(
		"{rule}", url.QueryEscape(a.Rule),
		"{id}", url.QueryEscape(a.ID),
		"{auditID}", url.QueryEscape(a.AuditID),
		"{cluster}", url.QueryEscape(a.Cluster),
	).Replace(tmpl)
}

// Convert makes Alertmanager alerts of vigil's. An audit alert is an event,
// not a state that a later evaluation could find resolved, so it is sent
// with an end: endsAt is resolveAfter past the time of sending (never
// before startsAt), not past the event, so that an alert delivered late
// after retries still arrives firing and is notified. A repeat with the
// same labels within that time extends the one Alertmanager alert.
func Convert(alerts []*alert.Alert, now time.Time, resolveAfter time.Duration, generatorTmpl string) []Alert {
	out := make([]Alert, len(alerts))
	for i, a := range alerts {
		end := now
		if a.Time.After(end) {
			end = a.Time
		}
		out[i] = Alert{
			Labels:       Labels(a),
			Annotations:  Annotations(a),
			StartsAt:     a.Time.UTC(),
			EndsAt:       end.Add(resolveAfter).UTC(),
			GeneratorURL: generatorURL(generatorTmpl, a),
		}
	}
	return out
}
