package webhook

import (
	"encoding/json"
	"fmt"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Version is the webhook body schema version. It changes only if a field
// is removed or changes meaning; new fields are added within a version.
const Version = "1"

// Payload is the body of every webhook request.
type Payload struct {
	Version string         `json:"version"`
	Alerts  []*alert.Alert `json:"alerts"`
}

// Body is the JSON body for alerts.
func Body(alerts []*alert.Alert) ([]byte, error) {
	if alerts == nil {
		alerts = []*alert.Alert{}
	}
	b, err := json.Marshal(Payload{Version: Version, Alerts: alerts})
	if err != nil {
		return nil, fmt.Errorf("webhook: encode body: %w", err)
	}
	return b, nil
}
