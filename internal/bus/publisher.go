package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// Publisher stores audit events of one cluster on the AUDIT stream. It
// implements ingest.Publisher.
type Publisher struct {
	js      jetstream.JetStream
	cluster string
	subject string
}

var _ ingest.Publisher = (*Publisher)(nil)

// NewPublisher publishes to the AUDIT subject of cluster. The JetStream
// handle's async-pending limit (WithPublishAsyncMaxPending) bounds how many
// events are in flight.
func NewPublisher(js jetstream.JetStream, cluster string) *Publisher {
	return &Publisher{js: js, cluster: cluster, subject: AuditSubject(cluster)}
}

// Publish sends the batch asynchronously and waits for every PubAck.
func (p *Publisher) Publish(ctx context.Context, batch []audit.Raw) error {
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	for _, r := range batch {
		msg := &nats.Msg{Subject: p.subject, Data: r.Data, Header: nats.Header{}}
		msg.Header.Set(HeaderCluster, p.cluster)
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(r.MsgID()))
		if err != nil {
			return fmt.Errorf("publish %s: %w", r.MsgID(), err)
		}
		futures = append(futures, f)
	}
	return waitAll(ctx, futures)
}

// DeadLetter stores input that is not a usable audit event.
func (p *Publisher) DeadLetter(ctx context.Context, d ingest.DeadLetter) error {
	msg := &nats.Msg{Subject: DeadSubject("ingest", p.cluster), Data: d.Data, Header: nats.Header{}}
	msg.Header.Set(HeaderCluster, p.cluster)
	msg.Header.Set(HeaderSource, d.Source)
	msg.Header.Set(HeaderReason, d.Reason)
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead-letter from %s: %w", d.Source, err)
	}
	return nil
}

func waitAll(ctx context.Context, futures []jetstream.PubAckFuture) error {
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d events not stored: %w", len(errs), len(futures), errors.Join(errs...))
	}
	return nil
}

// AlertSubject is the ALERTS subject of an alert.
func AlertSubject(a *alert.Alert) string {
	return SubjectAlertsPrefix + "." + Token(a.Severity) + "." + Token(a.Rule)
}

// AlertMsg builds the ALERTS message of an alert; its MsgID is the alert's
// identity, so a republished alert is dropped by JetStream.
func AlertMsg(a *alert.Alert) (*nats.Msg, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	msg := &nats.Msg{Subject: AlertSubject(a), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, a.ID)
	return msg, nil
}

// PublishAlert stores one alert on ALERTS and waits for the PubAck.
func PublishAlert(ctx context.Context, js jetstream.JetStream, a *alert.Alert) error {
	msg, err := AlertMsg(a)
	if err != nil {
		return err
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish alert %s: %w", a.ID, err)
	}
	return nil
}

// PublishAlerts stores alerts asynchronously and waits for all PubAcks.
func PublishAlerts(ctx context.Context, js jetstream.JetStream, alerts []*alert.Alert) error {
	futures := make([]jetstream.PubAckFuture, 0, len(alerts))
	for _, a := range alerts {
		msg, err := AlertMsg(a)
		if err != nil {
			return err
		}
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("publish alert %s: %w", a.ID, err)
		}
		futures = append(futures, f)
	}
	return waitAll(ctx, futures)
}
