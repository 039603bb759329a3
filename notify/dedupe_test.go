package notify

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// An alert with a delivery record, and the second of two copies in one
// fetch, are acknowledged and counted; the rest go on.
func TestDedupeDropsWhatWasSent(t *testing.T) {
	e := newEnv(t)
	kv := e.kv()
	alerts := alerttest.Many(3)
	if _, err := kv.Put(context.Background(), sentKey("siem", alerts[0].ID), []byte("earlier")); err != nil {
		t.Fatal(err)
	}
	// Another destination's record does not count for this one.
	if _, err := kv.Put(context.Background(), sentKey("chat", alerts[1].ID), []byte("earlier")); err != nil {
		t.Fatal(err)
	}
	c := e.consumer("siem", time.Minute)
	e.publish(alerts...)
	// The same alert again under another MsgID, as a replay stores it:
	// twice in one fetch.
	msg, err := engine.AlertMsg(alerts[2])
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(jetstream.MsgIDHeader, "replayed")
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	items := e.fetch(c, 4)
	s := &dedupe{kv: kv, dest: "siem", settle: e.settler("siem"),
		duplicates: e.m.NotifyDuplicates.WithLabelValues("siem"), logger: slog.New(slog.DiscardHandler)}

	got := s.exec(context.Background(), items)
	if want := []string{alerts[1].ID, alerts[2].ID}; !slices.Equal(ids(got), want) {
		t.Errorf("passed on %v, want %v", ids(got), want)
	}
	if n := testutil.ToFloat64(s.duplicates); n != 2 {
		t.Errorf("duplicates counted %v, want 2", n)
	}
	waitFor(t, "the delivered alert acknowledged", func() bool { return e.ackPending("siem")() == 2 })
}

// The delivery record markDelivered writes is the one dedupe reads.
func TestMarkDeliveredRecordsThenAcknowledges(t *testing.T) {
	e := newEnv(t)
	kv := e.kv()
	clk := newClock()
	alerts := alerttest.Many(2)
	items := e.fetched("siem", alerts...)
	m := &markDelivered{kv: kv, dest: "siem", settle: e.settler("siem"),
		delivered: e.m.NotifyDelivered.WithLabelValues("siem"), now: clk.now, logger: slog.New(slog.DiscardHandler)}

	m.exec(context.Background(), items)
	for _, a := range alerts {
		entry, err := kv.Get(context.Background(), sentKey("siem", a.ID))
		if err != nil {
			t.Fatalf("no delivery record of %s: %v", a.ID, err)
		}
		if got, want := string(entry.Value()), clk.now().UTC().Format(time.RFC3339); got != want {
			t.Errorf("record of %s = %q, want the delivery time %q", a.ID, got, want)
		}
	}
	if n := testutil.ToFloat64(m.delivered); n != 2 {
		t.Errorf("delivered counted %v, want 2", n)
	}
	waitFor(t, "both alerts acknowledged", e.settled("siem"))

	// The same alerts again, as after a lost acknowledgement: dedupe
	// drops them.
	d := &dedupe{kv: kv, dest: "siem", settle: e.settler("siem"),
		duplicates: e.m.NotifyDuplicates.WithLabelValues("siem"), logger: slog.New(slog.DiscardHandler)}
	if got := d.exec(context.Background(), items); len(got) != 0 {
		t.Errorf("dedupe passed on %v after delivery", ids(got))
	}
}
