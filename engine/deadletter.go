package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
)

// maxDeliverAdvisory is the subject JetStream announces an exhausted
// message on, for the engine's consumer.
const maxDeliverAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + bus.StreamAudit + "." + bus.ConsumerEngine

type maxDeliverEvent struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// DeadLetterExhausted copies every AUDIT message that reached MaxDeliver on
// the engine consumer into the DEAD stream with the reason, until ctx is
// done. Workers share a queue group so each advisory is handled once, and
// the copy's MsgID makes a repeat harmless.
func DeadLetterExhausted(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, logger *slog.Logger) error {
	stream, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanQueueSubscribe(maxDeliverAdvisory, "vigil-engine-dead-letters", ch)
	if err != nil {
		return fmt.Errorf("dead letters: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			var ev maxDeliverEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				logger.Warn("bad max-deliveries advisory", "err", err)
				continue
			}
			if err := copyToDead(ctx, js, stream, ev); err != nil {
				logger.Error("event exhausted its deliveries and could not be dead-lettered", "stream_seq", ev.StreamSeq, "err", err)
				continue
			}
			logger.Warn("event exhausted its deliveries; moved to the DEAD stream", "stream_seq", ev.StreamSeq, "deliveries", ev.Deliveries)
		}
	}
}

func copyToDead(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, ev maxDeliverEvent) error {
	raw, err := stream.GetMsg(ctx, ev.StreamSeq)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: bus.DeadSubject("engine"), Data: raw.Data, Header: nats.Header{}}
	for k, v := range raw.Header {
		msg.Header[k] = v
	}
	msg.Header.Del(jetstream.MsgIDHeader)
	msg.Header.Set(bus.HeaderSource, raw.Subject+"#"+strconv.FormatUint(ev.StreamSeq, 10))
	msg.Header.Set(bus.HeaderReason, fmt.Sprintf("not processed after %d deliveries", ev.Deliveries))
	_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID("exhausted/"+strconv.FormatUint(ev.StreamSeq, 10)))
	return err
}
