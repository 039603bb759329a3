package bus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

func rawEvents(t testing.TB, n int, pad int) []audit.Raw {
	t.Helper()
	out := make([]audit.Raw, 0, n)
	for i := range n {
		line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-%d","stage":"ResponseComplete","verb":"get","userAgent":%q}`, i, strings.Repeat("x", pad))
		r, err := audit.ParseRaw([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// eventsOf lists how many events each segment holds.
func eventsOf(segs []bus.Segment) string {
	var n []int
	for _, s := range segs {
		n = append(n, s.Events)
	}
	return fmt.Sprint(n)
}

func TestCutBoundsSegmentsAndCutsTheSameEventsTheSameWay(t *testing.T) {
	batch := rawEvents(t, 200, 100)
	o := bus.SegmentOptions{Events: 64, Bytes: 1 << 20}
	segs, tooLarge := bus.Cut(batch, o, 1<<20)
	if len(tooLarge) != 0 {
		t.Fatalf("too large: %v", tooLarge)
	}
	if got := eventsOf(segs); got != "[64 64 64 8]" {
		t.Fatalf("segments of %v events, want [64 64 64 8]", got)
	}
	again, _ := bus.Cut(rawEvents(t, 200, 100), o, 1<<20)
	for i := range segs {
		if segs[i].MsgID != again[i].MsgID {
			t.Fatalf("segment %d: MsgID %s, then %s for the same events", i, segs[i].MsgID, again[i].MsgID)
		}
	}
	if segs[0].MsgID == segs[1].MsgID {
		t.Fatalf("two segments of different events share MsgID %s", segs[0].MsgID)
	}

	// The byte bound: each event is about 200 bytes.
	small, _ := bus.Cut(batch, bus.SegmentOptions{Events: 64, Bytes: 1000}, 1<<20)
	for _, s := range small {
		if len(s.Data) > 1000 {
			t.Fatalf("segment of %d bytes, bound 1000", len(s.Data))
		}
	}
	if len(small) < 40 {
		t.Fatalf("%d segments under a 1000-byte bound, want 200 events in segments of 4 or fewer", len(small))
	}
}

func TestCutKeepsAnEventLargerThanTheByteBoundAloneAndLeavesOutWhatCannotFit(t *testing.T) {
	batch := append(rawEvents(t, 2, 10), rawEvents(t, 1, 5000)...)
	batch = append(batch, rawEvents(t, 1, 3<<20)...)
	batch = append(batch, rawEvents(t, 1, 10)...)
	segs, tooLarge := bus.Cut(batch, bus.SegmentOptions{Bytes: 1000}, 1<<20)
	if fmt.Sprint(tooLarge) != "[3]" {
		t.Fatalf("too large %v, want [3]", tooLarge)
	}
	if got := eventsOf(segs); got != "[2 1 1]" {
		t.Fatalf("segments of %v events, want [2 1 1]: the large event alone", got)
	}
}

func TestSegmentEventsReadsSegmentsSingleEventsAndRefusesUnknownFormats(t *testing.T) {
	multiline := []byte("{\n  \"kind\": \"Event\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"auditID\": \"m\",\n  \"stage\": \"ResponseComplete\",\n  \"verb\": \"get\"\n}\n")
	r, err := audit.ParseRaw(multiline)
	if err != nil {
		t.Fatal(err)
	}
	batch := append(rawEvents(t, 3, 0), r)
	segs, _ := bus.Cut(batch, bus.SegmentOptions{}, 1<<20)
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	h := nats.Header{}
	h.Set(bus.HeaderSegment, bus.SegmentFormat)
	events, err := bus.SegmentEvents(h, segs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 {
		t.Fatalf("read %d events, want 4: %q", len(events), segs[0].Data)
	}
	for i, ev := range events {
		got, err := audit.ParseRaw(ev)
		if err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev)
		}
		if got.MsgID() != batch[i].MsgID() {
			t.Fatalf("event %d is %s, want %s", i, got.MsgID(), batch[i].MsgID())
		}
	}

	single, err := bus.SegmentEvents(nats.Header{}, multiline)
	if err != nil || len(single) != 1 || !bytes.Equal(single[0], multiline) {
		t.Fatalf("a message without %s: %q, %v; want the message as one event", bus.HeaderSegment, single, err)
	}

	h.Set(bus.HeaderSegment, "2")
	if _, err := bus.SegmentEvents(h, segs[0].Data); !errors.Is(err, bus.ErrSegmentFormat) || !strings.Contains(err.Error(), `"2"`) {
		t.Fatalf("format 2: %v, want ErrSegmentFormat naming it", err)
	}
}

func TestSegmentPublisherStoresABatchRepublishedOnceAndLeavesOutWhatIsTooLarge(t *testing.T) {
	js, ctx := runStreams(t)
	pub := bus.NewSegmentPublisher(js, "prod", bus.SegmentOptions{Events: 16})
	batch := rawEvents(t, 100, 10)
	huge := rawEvents(t, 1, int(js.Conn().MaxPayload()))
	huge[0].AuditID = "huge"
	batch = append(batch[:50:50], append(huge, batch[50:]...)...)
	for range 2 {
		err := pub.Publish(ctx, batch)
		index, limit, ok := ingest.TooLarge(err)
		if !ok || fmt.Sprint(index) != "[50]" {
			t.Fatalf("Publish: %v, want the event at 50 too large", err)
		}
		if want := fmt.Sprintf("max_payload (%d bytes, less 1024 for headers)", js.Conn().MaxPayload()); !strings.Contains(limit, want) {
			t.Fatalf("limit %q, want it to say %q", limit, want)
		}
	}
	// 100 events in segments of 16, the one left out cutting none.
	if n := natstest.Count(t, js, bus.StreamAudit); n != 7 {
		t.Fatalf("AUDIT holds %d messages, want 7 segments", n)
	}
	got := map[string]int{}
	for _, m := range natstest.Messages(t, js, bus.StreamAudit) {
		if m.Headers().Get(bus.HeaderCluster) != "prod" {
			t.Fatalf("segment without its cluster: %v", m.Headers())
		}
		events, err := bus.SegmentEvents(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			r, err := audit.ParseRaw(ev)
			if err != nil {
				t.Fatal(err)
			}
			got[r.MsgID()]++
		}
	}
	if len(got) != 100 {
		t.Fatalf("AUDIT holds %d distinct events, want 100", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
}

// TestPublishSegmentsNamesSegmentsAsTheSourceSaysAndSplitsWhatNoLongerFits
// checks the cut a source gives: each segment stored under the name it
// chose, once however often it is re-published, an event too large left
// out, and a segment larger than the server's max_payload (cut before a
// restart under a larger one) split rather than refused for ever.
func TestPublishSegmentsNamesSegmentsAsTheSourceSaysAndSplitsWhatNoLongerFits(t *testing.T) {
	js, ctx := runStreams(t)
	pub := bus.NewSegmentPublisher(js, "prod", bus.SegmentOptions{})
	max := int(js.Conn().MaxPayload())
	small := rawEvents(t, 10, 10)
	big := rawEvents(t, 3, max/3) // together larger than a message
	huge := rawEvents(t, 1, max)
	batch := append(append(append(small[:5:5], huge...), small[5:]...), big...)
	ends, ids := []int{11, 14}, []string{"file/a/0-100", "file/a/100-200"}
	for range 2 {
		index, _, ok := ingest.TooLarge(pub.PublishSegments(ctx, batch, ends, ids))
		if !ok || fmt.Sprint(index) != "[5]" {
			t.Fatalf("PublishSegments left out %v (%v), want the event at 5", index, ok)
		}
	}
	var names []string
	for _, m := range natstest.Messages(t, js, bus.StreamAudit) {
		names = append(names, m.Headers().Get("Nats-Msg-Id"))
	}
	if got := fmt.Sprint(names); got != "[file/a/0-100 file/a/100-200/0 file/a/100-200/1]" {
		t.Fatalf("AUDIT holds %s, want the first segment as named and the second split in two", got)
	}
	if n := natstest.CountAuditEvents(t, js); n != 13 {
		t.Fatalf("AUDIT holds %d events, want the 13 that fit", n)
	}
	if err := pub.PublishSegments(ctx, batch, ends, ids[:1]); err == nil || !strings.Contains(err.Error(), "2 segment ends but 1 ids") {
		t.Fatalf("mismatched ends and ids: %v", err)
	}
}

// TestPublishCountedSaysWhatJetStreamAlreadyHeld: a message JetStream
// drops by its MsgID counts its events as duplicates, all of a segment's.
func TestPublishCountedSaysWhatJetStreamAlreadyHeld(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	single := bus.NewPublisher(js, "c1")
	if _, err := single.PublishCounted(ctx, rawEvents(t, 3, 10)); err != nil {
		t.Fatal(err)
	}
	got, err := single.PublishCounted(ctx, rawEvents(t, 5, 10))
	if err != nil {
		t.Fatal(err)
	}
	if want := (bus.Stored{Events: 2, Duplicates: 3}); got != want {
		t.Errorf("5 events, 3 of them stored before: %+v, want %+v", got, want)
	}

	segs := bus.NewSegmentPublisher(js, "c1", bus.SegmentOptions{})
	batch := rawEvents(t, 30, 10)
	if _, err := segs.PublishSegmentsCounted(ctx, batch[:20], []int{12, 20}, []string{"s/a", "s/b"}); err != nil {
		t.Fatal(err)
	}
	got, err = segs.PublishSegmentsCounted(ctx, batch, []int{12, 20, 30}, []string{"s/a", "s/b", "s/c"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (bus.Stored{Events: 10, Duplicates: 20}); got != want {
		t.Errorf("segments of 12, 8 and 10 events, the first two stored before: %+v, want %+v", got, want)
	}
}
