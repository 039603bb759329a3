package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
)

// AlertMsg is the ALERTS message of an alert: its JSON on the subject of
// its severity and rule, with the alert's identity as MsgID, so that a
// republished alert is dropped by JetStream.
func AlertMsg(a *alert.Alert) (*nats.Msg, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	msg := &nats.Msg{Subject: bus.AlertSubject(a.Severity, a.Rule), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, a.ID)
	return msg, nil
}

// PublishAlerts stores alerts on ALERTS and waits for every PubAck.
func PublishAlerts(ctx context.Context, js jetstream.JetStream, alerts []*alert.Alert) error {
	msgs := make([]*nats.Msg, len(alerts))
	for i, a := range alerts {
		m, err := AlertMsg(a)
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	return bus.PublishAll(ctx, js, msgs)
}
