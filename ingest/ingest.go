// Package ingest defines what an audit event source is. Sources live in
// sub-packages (file, webhook); they read events and hand them to a
// Publisher, which returns only once the events are stored durably.
//
// Sources know nothing of the transport: a Publisher reports events it can
// never store (larger than its largest message) with an error that lists
// them (TooLarge), and Store turns those into dead letters, the same way
// for every source.
package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Publisher stores events durably. Publish returns nil only after every
// event of the batch is stored; on error, some may have been stored and the
// caller must retry the whole batch (the events' identities make the retry
// harmless) — except for an error with a TooLarge method (see TooLarge),
// which says that every other event was stored.
type Publisher interface {
	Publish(ctx context.Context, batch []audit.Raw) error
	// DeadLetter stores input that is not a usable audit event, with where
	// it came from and why, so that nothing accepted is silently dropped.
	DeadLetter(ctx context.Context, source, reason string, data []byte) error
}

// SegmentPublisher is a Publisher that stores several events per message
// under identities the source gives. A source that can re-read exactly the
// same events after a crash (a file, by offsets) names each segment by
// where its events came from, and records the cut before publishing it:
// re-published after a crash, the segment has the same identity and is
// dropped as a copy.
type SegmentPublisher interface {
	Publisher
	// Cuts says where the publisher would best cut batch into segments:
	// ends[i] is one past the last event of segment i.
	Cuts(batch []audit.Raw) (ends []int)
	// PublishSegments stores batch cut at ends, segment i named ids[i],
	// with Publish's contract otherwise (TooLarge included).
	PublishSegments(ctx context.Context, batch []audit.Raw, ends []int, ids []string) error
}

// Source reads audit events and publishes them until ctx is done.
type Source interface {
	Run(ctx context.Context, pub Publisher) error
}

// TooLargeError is implemented by the error a Publisher returns when it
// stored every event of a batch but those it can never store.
type TooLargeError interface {
	error
	// TooLarge lists those events by position in the batch, ascending.
	TooLarge() []int
	// Limit says what they exceed, for the dead letter's reason (e.g.
	// "the NATS server's max_payload (1048576 bytes)").
	Limit() string
}

// TooLarge returns the events of a batch that Publish left out because
// they are too large to store, and what they exceed; ok is false for any
// other error.
func TooLarge(err error) (index []int, limit string, ok bool) {
	var tl TooLargeError
	if !errors.As(err, &tl) {
		return nil, "", false
	}
	return tl.TooLarge(), tl.Limit(), true
}

// SampleBytes is how much of an event too large to store its dead letter
// keeps: enough to recognise it.
const SampleBytes = 4 << 10

// DeadLetterFunc stores the dead letter of event i of a batch, given why
// and the first bytes of its data. The source knows where the event came
// from, and how to retry.
type DeadLetterFunc func(ctx context.Context, i int, reason string, sample []byte) error

// Store publishes batch and dead-letters the events of it that can never
// be stored, so that one oversized event holds back neither its batch nor
// its source. It returns nil once every event is stored or dead-lettered;
// an error means the batch is to be retried.
func Store(ctx context.Context, pub Publisher, batch []audit.Raw, deadLetter DeadLetterFunc) error {
	return deadLetterTooLarge(ctx, pub.Publish(ctx, batch), batch, deadLetter)
}

// StoreSegments is Store for a batch cut by the source (see
// SegmentPublisher).
func StoreSegments(ctx context.Context, pub SegmentPublisher, batch []audit.Raw, ends []int, ids []string, deadLetter DeadLetterFunc) error {
	return deadLetterTooLarge(ctx, pub.PublishSegments(ctx, batch, ends, ids), batch, deadLetter)
}

// deadLetterTooLarge handles what publishing batch returned: nil, an error
// to retry on, or the events too large to store, which it dead-letters.
func deadLetterTooLarge(ctx context.Context, err error, batch []audit.Raw, deadLetter DeadLetterFunc) error {
	index, limit, ok := TooLarge(err)
	if !ok {
		return err
	}
	for _, i := range index {
		ev := batch[i]
		sample := ev.Data[:min(len(ev.Data), SampleBytes)]
		reason := fmt.Sprintf("event %s of %d bytes is larger than %s; data is its first %d bytes", ev.MsgID(), len(ev.Data), limit, len(sample))
		if err := deadLetter(ctx, i, reason, sample); err != nil {
			return err
		}
	}
	return nil
}
