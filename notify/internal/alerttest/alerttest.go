// Package alerttest builds alerts for the notifier tests.
package alerttest

import (
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Time is the fixed time of sample alerts, so payloads are reproducible.
var Time = time.Date(2024, 2, 19, 1, 13, 32, 195666000, time.UTC)

// Sample is a fully populated per-event alert, as the engine would emit it.
func Sample() *alert.Alert {
	auditID := "3f9e34f0-52e8-44bc-88fb-10ae742d2a0a"
	return &alert.Alert{
		ID:           alert.ID("secret-read-by-non-node", auditID),
		Rule:         "secret-read-by-non-node",
		Title:        "Secret read by a non-node identity",
		Severity:     alert.SeverityHigh,
		Tags:         []string{"credential-access", "T1552.007"},
		Output:       "system:serviceaccount:default:app get secrets default/db",
		Cluster:      "prod-eu-1",
		AuditID:      auditID,
		Stage:        "ResponseComplete",
		Time:         Time,
		User:         "system:serviceaccount:default:app",
		Verb:         "get",
		Resource:     "secrets",
		Namespace:    "default",
		Name:         "db",
		SourceIPs:    []string{"10.0.0.7"},
		UserAgent:    "curl/8.5.0",
		ResponseCode: 200,
		Count:        1,
	}
}

// Many returns n alerts of the sample's rule, each from a different request.
func Many(n int) []*alert.Alert {
	out := make([]*alert.Alert, n)
	for i := range out {
		a := Sample()
		a.AuditID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		a.ID = alert.ID(a.Rule, a.AuditID)
		a.Name = fmt.Sprintf("db-%d", i)
		a.Output = fmt.Sprintf("%s get secrets default/%s", a.User, a.Name)
		a.Time = Time.Add(time.Duration(i) * time.Second)
		out[i] = a
	}
	return out
}
