package natstest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
)

const readTimeout = 30 * time.Second

// Count is the number of messages stream holds.
func Count(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// Messages reads every message stream holds.
func Messages(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	n := Count(t, js, stream)
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(min(1000, n-uint64(len(out)))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			t.Fatal(batch.Error())
		}
		if got == 0 {
			t.Fatalf("%s: read %d of %d messages", stream, len(out), n)
		}
	}
	return out
}

// StoredAudit returns how often each auditID/stage is on the AUDIT stream,
// as a message of its own or in a segment, checking that each message of
// one event holds the event its MsgID names.
func StoredAudit(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range Messages(t, js, bus.StreamAudit) {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if m.Headers().Get(bus.HeaderSegment) != "" {
			events, err := bus.SegmentEvents(m.Headers(), m.Data())
			if err != nil {
				t.Fatalf("AUDIT segment %s: %v", id, err)
			}
			for i, ev := range events {
				r, err := audit.ParseRaw(ev)
				if err != nil {
					t.Fatalf("AUDIT segment %s, event %d: %v: %.200s", id, i, err, ev)
				}
				out[r.MsgID()]++
			}
			continue
		}
		// Matching the MsgID against the bytes avoids decoding tens of
		// thousands of events again.
		auditID, stage, ok := strings.Cut(id, "/")
		if !ok || !bytes.Contains(m.Data(), []byte(`"auditID":"`+auditID+`"`)) || !bytes.Contains(m.Data(), []byte(`"stage":"`+stage+`"`)) {
			t.Fatalf("AUDIT message with MsgID %q does not hold that event: %.200s", id, m.Data())
		}
		out[id]++
	}
	return out
}

// CountAuditEvents is the number of events the AUDIT stream holds, each
// event of a segment counted.
func CountAuditEvents(t testing.TB, js jetstream.JetStream) int {
	t.Helper()
	n := 0
	for _, m := range Messages(t, js, bus.StreamAudit) {
		events, err := bus.SegmentEvents(m.Headers(), m.Data())
		if err != nil {
			t.Fatalf("AUDIT message %s: %v", m.Headers().Get(jetstream.MsgIDHeader), err)
		}
		n += len(events)
	}
	return n
}

// ExpectAuditExactlyOnce checks that AUDIT holds every auditID/stage of
// want once and nothing else.
func ExpectAuditExactlyOnce(t testing.TB, js jetstream.JetStream, want map[string]bool) {
	t.Helper()
	got := StoredAudit(t, js)
	missing, dup, extra := 0, 0, 0
	for id := range want {
		switch n := got[id]; {
		case n == 0:
			missing++
			if missing <= 5 {
				t.Errorf("event %s never reached AUDIT", id)
			}
		case n > 1:
			dup++
			if dup <= 5 {
				t.Errorf("event %s reached AUDIT %d times", id, n)
			}
		}
	}
	for id := range got {
		if !want[id] {
			extra++
			if extra <= 5 {
				t.Errorf("AUDIT holds unexpected event %s", id)
			}
		}
	}
	if missing+dup+extra > 0 {
		t.Fatalf("of %d events: %d missing, %d duplicated, %d unexpected", len(want), missing, dup, extra)
	}
}

// ConsumerIdle reports whether the named consumer has acknowledged every
// message its stream holds. NumPending alone is not enough: the server
// makes a new consumer visible before it takes leadership and counts what
// it has to deliver, and in that window it reports nothing pending, so a
// test polling only NumPending can see "idle" before anything ran.
func ConsumerIdle(ctx context.Context, js jetstream.JetStream, stream, consumer string) bool {
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	si, err := st.Info(ctx)
	return err == nil && info.AckFloor.Stream >= si.State.LastSeq &&
		info.NumPending == 0 && info.NumAckPending == 0
}

// WaitAuditEvents waits until the AUDIT stream holds at least n events,
// each event of a segment counted, reading each message once. It pulls in
// short fetches rather than keep one long-lived iteration, whose pull can
// be lost on a server busy being killed and restarted around it.
func WaitAuditEvents(t testing.TB, js jetstream.JetStream, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("AUDIT: %v", err)
	}
	got, messages := 0, 0
	for got < n {
		if ctx.Err() != nil {
			t.Fatalf("AUDIT holds %d events in %d messages, want %d", got, messages, n)
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the ordered consumer is being reset: fetch again
			continue
		}
		for m := range batch.Messages() {
			events, err := bus.SegmentEvents(m.Headers(), m.Data())
			if err != nil {
				t.Fatalf("AUDIT message %s: %v", m.Headers().Get(jetstream.MsgIDHeader), err)
			}
			got += len(events)
			messages++
		}
	}
}
