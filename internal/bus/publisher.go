package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Publisher stores audit events of one cluster on the AUDIT stream.
type Publisher struct {
	js      jetstream.JetStream
	cluster string
	subject string
	// segments, when set, joins each batch into segments; nil publishes
	// one message per event.
	segments *SegmentOptions
}

// NewPublisher publishes to the AUDIT subject of cluster, one message per
// event, MsgID auditID/stage. The JetStream handle's async-pending limit
// (WithPublishAsyncMaxPending) bounds how many messages are in flight.
func NewPublisher(js jetstream.JetStream, cluster string) *Publisher {
	return &Publisher{js: js, cluster: cluster, subject: AuditSubject(cluster)}
}

// NewSegmentPublisher is NewPublisher joining each batch into segments
// (Cut). A batch published again is cut the same way, so each of its
// segments has the MsgID it had and JetStream drops the copy: only a
// source that hands over the same batch on a retry (the webhook, whose
// client re-sends the same EventList) keeps "nothing twice" with it.
func NewSegmentPublisher(js jetstream.JetStream, cluster string, o SegmentOptions) *Publisher {
	o = o.withDefaults()
	return &Publisher{js: js, cluster: cluster, subject: AuditSubject(cluster), segments: &o}
}

// TooLargeError is returned by Publish when every event of a batch was
// stored except those listed, which are larger than a NATS message can be
// (the server's max_payload): retrying them can never succeed.
type TooLargeError struct {
	// Index lists the events, by position in the batch, ascending.
	Index []int
	// MaxPayload is the server's limit, in bytes.
	MaxPayload int64
	// Reserve is what of MaxPayload a message's headers were left: a
	// segment's are larger than a single event's.
	Reserve int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%d of the events are larger than %s", len(e.Index), e.Limit())
}

// TooLarge lists the events that were not stored.
func (e *TooLargeError) TooLarge() []int { return slices.Clone(e.Index) }

// Limit says what was exceeded, in words for a dead letter.
func (e *TooLargeError) Limit() string {
	if e.Reserve > 0 {
		return fmt.Sprintf("the NATS server's max_payload (%d bytes, less %d for headers)", e.MaxPayload, e.Reserve)
	}
	return fmt.Sprintf("the NATS server's max_payload (%d bytes)", e.MaxPayload)
}

// Stored is what JetStream did with the events of one publish.
type Stored struct {
	// Events is how many events are new on AUDIT.
	Events int
	// Duplicates is how many events JetStream already held under their
	// message's MsgID and dropped. A segment is dropped whole, so every
	// event of a duplicate segment is a duplicate.
	Duplicates int
}

// Publish sends the batch asynchronously and waits for every PubAck. An
// event larger than a NATS message is left out, the others are sent, and
// the error is then a *TooLargeError naming it; any other failure means
// some events may not be stored and the whole batch is to be retried
// (MsgIDs make the retry harmless).
func (p *Publisher) Publish(ctx context.Context, batch []audit.Raw) error {
	_, err := p.PublishCounted(ctx, batch)
	return err
}

// PublishCounted is Publish, saying how many of the events were new on
// AUDIT and how many JetStream dropped as copies of what it held. With an
// error it counts the messages acknowledged before it: those stored by a
// failed attempt are duplicates of the retry.
func (p *Publisher) PublishCounted(ctx context.Context, batch []audit.Raw) (Stored, error) {
	if p.segments != nil {
		return p.publishSegments(ctx, batch)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	var tooLarge []int
	for i, r := range batch {
		msg := &nats.Msg{Subject: p.subject, Data: r.Data, Header: nats.Header{}}
		msg.Header.Set(HeaderCluster, p.cluster)
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(r.MsgID()))
		if errors.Is(err, nats.ErrMaxPayload) {
			tooLarge = append(tooLarge, i)
			continue
		}
		if err != nil {
			return Stored{}, fmt.Errorf("publish %s: %w", r.MsgID(), err)
		}
		futures = append(futures, f)
	}
	stored, err := waitAcks(ctx, futures, nil)
	if err != nil {
		return stored, err
	}
	if len(tooLarge) > 0 {
		return stored, &TooLargeError{Index: tooLarge, MaxPayload: p.js.Conn().MaxPayload()}
	}
	return stored, nil
}

func (p *Publisher) publishSegments(ctx context.Context, batch []audit.Raw) (Stored, error) {
	maxPayload := p.js.Conn().MaxPayload()
	segments, tooLarge := Cut(batch, p.segmentOptions(), int(maxPayload))
	return p.storeSegments(ctx, segments, tooLarge, maxPayload)
}

func (p *Publisher) segmentOptions() SegmentOptions {
	if p.segments != nil {
		return *p.segments
	}
	return SegmentOptions{}.withDefaults()
}

// Cuts says where PublishSegments would best cut batch: ends[i] is one
// past the last event of segment i (see the function Cuts).
func (p *Publisher) Cuts(batch []audit.Raw) []int {
	ends, _ := Cuts(batch, p.segmentOptions(), int(p.js.Conn().MaxPayload()))
	return ends
}

// PublishSegments stores batch cut at ends, segment i under MsgID ids[i],
// and waits for every PubAck: a source that can cut the same events the
// same way again after a crash (a file, by offsets) names its segments
// itself, so JetStream drops what it re-publishes. Events too large for a
// message alone are left out, as by Publish. A segment the server's
// max_payload no longer admits (it was cut under a larger one before a
// restart) is split, its parts named ids[i]+"/<part>", so that it is
// still stored rather than retried for ever.
func (p *Publisher) PublishSegments(ctx context.Context, batch []audit.Raw, ends []int, ids []string) error {
	_, err := p.PublishSegmentsCounted(ctx, batch, ends, ids)
	return err
}

// PublishSegmentsCounted is PublishSegments, counting as PublishCounted
// does.
func (p *Publisher) PublishSegmentsCounted(ctx context.Context, batch []audit.Raw, ends []int, ids []string) (Stored, error) {
	if len(ends) != len(ids) {
		return Stored{}, fmt.Errorf("%d segment ends but %d ids", len(ends), len(ids))
	}
	maxPayload := p.js.Conn().MaxPayload()
	limit := int(maxPayload) - headerReserve
	var (
		segments []Segment
		tooLarge []int
		from     int
	)
	for i, to := range ends {
		events := batch[from:to]
		data, n, left := encode(events, limit)
		for _, j := range left {
			tooLarge = append(tooLarge, from+j)
		}
		switch {
		case n == 0:
		case len(data) <= limit:
			segments = append(segments, Segment{Data: data, MsgID: ids[i], Events: n})
		default:
			parts, _ := Cut(events, SegmentOptions{Events: len(events), Bytes: limit}, int(maxPayload))
			for k := range parts {
				parts[k].MsgID = ids[i] + "/" + strconv.Itoa(k)
			}
			segments = append(segments, parts...)
		}
		from = to
	}
	// Events after the last segment are those too large alone.
	for j := from; j < len(batch); j++ {
		tooLarge = append(tooLarge, j)
	}
	return p.storeSegments(ctx, segments, tooLarge, maxPayload)
}

func (p *Publisher) storeSegments(ctx context.Context, segments []Segment, tooLarge []int, maxPayload int64) (Stored, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(segments))
	events := make([]int, 0, len(segments))
	for _, s := range segments {
		msg := &nats.Msg{Subject: p.subject, Data: s.Data, Header: nats.Header{}}
		msg.Header.Set(HeaderCluster, p.cluster)
		msg.Header.Set(HeaderSegment, SegmentFormat)
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(s.MsgID))
		if err != nil {
			return Stored{}, fmt.Errorf("publish segment %s of %d events: %w", s.MsgID, s.Events, err)
		}
		futures = append(futures, f)
		events = append(events, s.Events)
	}
	stored, err := waitAcks(ctx, futures, events)
	if err != nil {
		return stored, err
	}
	if len(tooLarge) > 0 {
		return stored, &TooLargeError{Index: tooLarge, MaxPayload: maxPayload, Reserve: headerReserve}
	}
	return stored, nil
}

// DeadLetter stores input that is not a usable audit event, with where it
// came from and why it was refused.
func (p *Publisher) DeadLetter(ctx context.Context, source, reason string, data []byte) error {
	msg := &nats.Msg{Subject: DeadSubject("ingest", p.cluster), Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderCluster, p.cluster)
	msg.Header.Set(HeaderSource, source)
	msg.Header.Set(HeaderReason, reason)
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead-letter from %s: %w", source, err)
	}
	return nil
}

// PublishAll stores messages asynchronously and waits for every PubAck.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Header.Get(jetstream.MsgIDHeader), err)
		}
		futures = append(futures, f)
	}
	return waitAll(ctx, futures)
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
	_, err := waitAcks(ctx, futures, nil)
	return err
}

// waitAcks waits for the PubAcks of futures and counts the events they
// stored, and those JetStream dropped as duplicates: events[i] is how many
// events message i holds, all of them 1 when events is nil.
func waitAcks(ctx context.Context, futures []jetstream.PubAckFuture, events []int) (Stored, error) {
	var (
		stored Stored
		errs   []error // distinct by message
		seen   = map[string]bool{}
		failed int
	)
	timeout := time.NewTimer(AckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			n := 1
			if events != nil {
				n = events[i]
			}
			if ack.Duplicate {
				stored.Duplicates += n
			} else {
				stored.Events += n
			}
		case err := <-f.Err():
			failed++
			if msg := err.Error(); !seen[msg] && len(errs) < maxDistinctErrors {
				seen[msg] = true
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return stored, ctx.Err()
		case <-timeout.C:
			errs = append(errs, ErrAckTimeout)
			failed += len(futures) - i
			return stored, fmt.Errorf("%d of %d messages not stored: %w", failed, len(futures), errors.Join(errs...))
		}
	}
	if failed > 0 {
		return stored, fmt.Errorf("%d of %d messages not stored: %w", failed, len(futures), errors.Join(errs...))
	}
	return stored, nil
}

// AlertSubject is the ALERTS subject of an alert of that severity and
// rule.
func AlertSubject(severity, rule string) string {
	return SubjectAlertsPrefix + "." + Token(severity) + "." + Token(rule)
}
