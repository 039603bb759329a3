package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// tooLarge is the error of a publisher whose messages hold at most max
// bytes.
type tooLarge struct {
	index []int
	max   int
}

func (e *tooLarge) Error() string   { return fmt.Sprintf("%d events too large", len(e.index)) }
func (e *tooLarge) TooLarge() []int { return e.index }
func (e *tooLarge) Limit() string   { return fmt.Sprintf("a %d-byte message", e.max) }

// sizedPublisher stores events up to max bytes, as a transport with a
// largest message would.
type sizedPublisher struct {
	max    int
	stored []string
	dead   []string
}

func (p *sizedPublisher) Publish(_ context.Context, batch []audit.Raw) error {
	var big []int
	for i, r := range batch {
		if len(r.Data) > p.max {
			big = append(big, i)
			continue
		}
		p.stored = append(p.stored, r.MsgID())
	}
	if len(big) > 0 {
		return fmt.Errorf("publish: %w", &tooLarge{index: big, max: p.max})
	}
	return nil
}

func (p *sizedPublisher) DeadLetter(_ context.Context, source, reason string, _ []byte) error {
	p.dead = append(p.dead, source+": "+reason)
	return nil
}

func TestStoreDeadLettersWhatCanNeverBeStored(t *testing.T) {
	pub := &sizedPublisher{max: 100}
	batch := []audit.Raw{
		{AuditID: "a", Stage: "ResponseComplete", Data: []byte(`{"small":1}`)},
		{AuditID: "b", Stage: "ResponseComplete", Data: []byte(strings.Repeat("x", 10_000))},
		{AuditID: "c", Stage: "ResponseComplete", Data: []byte(`{"small":2}`)},
	}
	var samples []int
	err := ingest.Store(context.Background(), pub, batch, func(ctx context.Context, i int, reason string, sample []byte) error {
		samples = append(samples, len(sample))
		return pub.DeadLetter(ctx, fmt.Sprintf("test:%d", i), reason, sample)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pub.stored, []string{"a/ResponseComplete", "c/ResponseComplete"}) {
		t.Errorf("stored %v, want the two small events", pub.stored)
	}
	want := "test:1: event b/ResponseComplete of 10000 bytes is larger than a 100-byte message; data is its first 4096 bytes"
	if len(pub.dead) != 1 || pub.dead[0] != want {
		t.Errorf("dead letters %q, want [%q]", pub.dead, want)
	}
	if !slices.Equal(samples, []int{ingest.SampleBytes}) {
		t.Errorf("samples of %v bytes, want %d", samples, ingest.SampleBytes)
	}
}

func TestStorePassesOtherFailuresOn(t *testing.T) {
	down := errors.New("transport down")
	err := ingest.Store(context.Background(), failing{down}, []audit.Raw{{AuditID: "a", Stage: "x"}}, func(context.Context, int, string, []byte) error {
		t.Error("dead-lettered on a failure that is not about size")
		return nil
	})
	if !errors.Is(err, down) {
		t.Fatalf("Store = %v, want the publisher's error", err)
	}
	if _, _, ok := ingest.TooLarge(err); ok {
		t.Error("TooLarge recognised an unrelated error")
	}
}

type failing struct{ err error }

func (f failing) Publish(context.Context, []audit.Raw) error { return f.err }
func (f failing) DeadLetter(context.Context, string, string, []byte) error {
	return f.err
}
