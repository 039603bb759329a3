package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// recordTimeout bounds writing one delivery record; a stopping notifier
// still finishes it.
const recordTimeout = 5 * time.Second

// markDelivered is the last stage: for the alerts of a delivered
// notification it writes the delivery record dedupe reads, then
// acknowledges them. In that order, an alert whose acknowledgement is lost,
// or not sent because the process died, is redelivered with its record
// already written, and dedupe drops it.
type markDelivered struct {
	kv        jetstream.KeyValue
	dest      string
	settle    *settler
	delivered prometheus.Counter
	now       func() time.Time
	logger    *slog.Logger
}

func (s *markDelivered) exec(ctx context.Context, items []item) {
	for _, it := range items {
		s.record(ctx, it)
		s.settle.ack(it.msg)
	}
	s.delivered.Add(float64(len(items)))
	s.logger.Debug("delivered", "alerts", len(items))
}

func (s *markDelivered) record(ctx context.Context, it item) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if _, err := s.kv.Put(kctx, sentKey(s.dest, it.a.ID), []byte(s.now().UTC().Format(time.RFC3339))); err != nil {
		s.logger.Warn("recording delivery failed; a redelivery may repeat it", "alert", it.a.ID, "err", err)
	}
}
