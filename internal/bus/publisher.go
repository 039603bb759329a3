package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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

// AckTimeout bounds the wait for the acknowledgements of one batch. A
// stream that cannot write (its disk is full) does not answer at all, and
// nats.go keeps waiting until the connection drops: the caller gets an
// error to retry on rather than waiting for ever.
const AckTimeout = 15 * time.Second

// ErrAckTimeout is returned when JetStream did not acknowledge a batch
// within AckTimeout.
var ErrAckTimeout = errors.New("JetStream did not acknowledge within " + AckTimeout.String())

// maxDistinctErrors bounds the errors a failed batch reports: a batch
// refused whole fails each message the same way.
const maxDistinctErrors = 4

func waitAll(ctx context.Context, futures []jetstream.PubAckFuture) error {
	var (
		errs   []error // distinct by message
		seen   = map[string]bool{}
		failed int
	)
	timeout := time.NewTimer(AckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			failed++
			if msg := err.Error(); !seen[msg] && len(errs) < maxDistinctErrors {
				seen[msg] = true
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			errs = append(errs, ErrAckTimeout)
			failed += len(futures) - i
			return fmt.Errorf("%d of %d messages not stored: %w", failed, len(futures), errors.Join(errs...))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d messages not stored: %w", failed, len(futures), errors.Join(errs...))
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
