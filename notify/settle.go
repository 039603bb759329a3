package notify

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/bus"
)

// maxReasonLen caps the dead-letter reason header.
const maxReasonLen = 1024

// deadLetterTimeout bounds storing one dead letter; a stopping notifier
// still finishes it.
const deadLetterTimeout = 5 * time.Second

// settler ends an alert's stay on one destination's consumer: the stage
// that is done with an alert acknowledges it, hands it back for
// redelivery, or dead-letters it, and always through here, so that
// failures to settle are logged one way.
type settler struct {
	js   jetstream.JetStream
	dest string
	// retryDeadLetter is how long an alert whose dead letter could not be
	// stored waits before it is redelivered and tried again.
	retryDeadLetter time.Duration
	dead            prometheus.Counter
	logger          *slog.Logger
}

func (s *settler) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.logger.Warn("ack failed; the alert will be redelivered and deduplicated", "err", err)
	}
}

// nak hands m back for redelivery after delay (at once when 0).
func (s *settler) nak(m jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil {
		s.logger.Warn("nak failed; the alert will be redelivered after the ack wait", "err", err)
	}
}

// nakAll hands items back at once: they were not tried, so no attempt is
// spent.
func (s *settler) nakAll(items []item) {
	for _, it := range items {
		s.nak(it.msg, 0)
	}
}

// deadLetter publishes the message to the destination's dead-letter
// subject, with the reason in a header, and acknowledges the original. If
// the publish fails the message is returned for redelivery rather than
// lost. id names the alert (its MsgID on DEAD).
func (s *settler) deadLetter(ctx context.Context, m jetstream.Msg, id, reason string) {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	msg := nats.NewMsg(bus.DeadSubject("notify", s.dest))
	msg.Data = m.Data()
	msg.Header.Set(bus.HeaderReason, strings.ToValidUTF8(strings.ReplaceAll(reason, "\n", " "), "?"))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	if _, err := s.js.PublishMsg(pctx, msg, jetstream.WithMsgID("notify/"+s.dest+"/"+id)); err != nil {
		s.logger.Error("dead-lettering failed; alert will be redelivered", "alert", id, "err", err)
		s.nak(m, s.retryDeadLetter)
		return
	}
	s.dead.Inc()
	s.logger.Error("alert dead-lettered", "alert", id, "reason", reason)
	s.ack(m)
}
