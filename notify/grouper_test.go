package notify

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// byRule groups by rule: 10s for company, then one notification a minute.
var byRule = grouping{by: []string{"rule"}, wait: 10 * time.Second, interval: time.Minute, repeat: 4 * time.Hour}

func (e *env) grouper(dest string, now func() time.Time) *grouper {
	e.t.Helper()
	return &grouper{
		kv: e.kv(), dest: dest, settle: e.settler(dest), now: now, keepEvery: time.Second,
		backoff: backoff.Policy{Initial: time.Second, Max: time.Second},
		logger:  slog.New(slog.DiscardHandler), groups: map[string]*group{},
	}
}

// grouped marks items as routed by route 0 with g.
func grouped(items []item, g grouping) []item {
	for i := range items {
		items[i].grouping = g
	}
	return items
}

// recorder is a deliver function that records what it was handed.
type recorder struct {
	got [][]string
	ok  bool
}

func (r *recorder) deliver(_ context.Context, items []item) bool {
	r.got = append(r.got, ids(items))
	return r.ok
}

func TestGrouperPassesUngroupedAlerts(t *testing.T) {
	e := newEnv(t)
	items := e.fetched("siem", alerttest.Many(2)...)
	items[1].grouping = byRule
	g := e.grouper("siem", time.Now)
	if got := g.exec(context.Background(), items); !slices.Equal(ids(got), []string{items[0].a.ID}) {
		t.Errorf("passed on %v, want the ungrouped alert only", ids(got))
	}
	if len(g.groups) != 1 {
		t.Errorf("%d groups held, want 1", len(g.groups))
	}
}

// Two replicas hold alerts of one group. When the group is due, the
// first to claim it in the bucket notifies; the other waits out the
// group_interval and notifies what it holds then.
func TestGrouperReplicasClaimEachNotificationOnce(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	items := grouped(e.fetched("secops", alerttest.Many(2)...), byRule)
	a, b := e.grouper("secops", clk.now), e.grouper("secops", clk.now)
	if got := a.exec(context.Background(), items[:1]); len(got) != 0 {
		t.Fatalf("a grouped alert was passed on: %v", ids(got))
	}
	b.exec(context.Background(), items[1:])
	if next := a.next(); !next.Equal(clk.now().Add(byRule.wait)) {
		t.Errorf("group due at %s, want group_wait after it started (%s)", next, clk.now().Add(byRule.wait))
	}
	var ra, rb recorder
	ra.ok, rb.ok = true, true
	a.flush(context.Background(), ra.deliver)
	if len(ra.got) != 0 {
		t.Fatalf("notified %v before group_wait", ra.got)
	}

	clk.advance(byRule.wait)
	a.flush(context.Background(), ra.deliver)
	b.flush(context.Background(), rb.deliver)
	if len(ra.got) != 1 || len(rb.got) != 0 {
		t.Fatalf("at group_wait: a notified %v, b %v; want a once, b not", ra.got, rb.got)
	}
	if next := b.next(); !next.Equal(clk.now().Add(byRule.interval)) {
		t.Errorf("b's group due at %s, want group_interval after a's notification", next)
	}
	clk.advance(byRule.interval)
	b.flush(context.Background(), rb.deliver)
	if !slices.Equal(slices.Concat(rb.got...), []string{items[1].a.ID}) {
		t.Errorf("b notified %v after group_interval, want its alert", rb.got)
	}
	if len(a.groups)+len(b.groups) != 0 {
		t.Error("a notified group is still held")
	}
}

// A notification that was not delivered gives its claim back, so that
// the retried alerts are not held a whole group_interval.
func TestGrouperGivesTheClaimBackWhenDeliveryFails(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	items := grouped(e.fetched("secops", alerttest.Many(2)...), byRule)
	a, b := e.grouper("secops", clk.now), e.grouper("secops", clk.now)
	a.exec(context.Background(), items[:1])
	b.exec(context.Background(), items[1:])
	clk.advance(byRule.wait)
	var failed, ok recorder
	ok.ok = true
	a.flush(context.Background(), failed.deliver)
	b.flush(context.Background(), ok.deliver)
	if len(failed.got) != 1 || len(ok.got) != 1 {
		t.Errorf("after a failed notification: a tried %v, b notified %v; want b to claim at once", failed.got, ok.got)
	}
}

// Held alerts are kept alive past the ack wait, and handed back at once
// on release.
func TestGrouperKeepsHeldAlertsAliveAndReleasesThem(t *testing.T) {
	e := newEnv(t)
	const ackWait = time.Second
	c := e.consumer("secops", ackWait)
	e.publish(alerttest.Sample())
	g := e.grouper("secops", time.Now)
	g.keepEvery = ackWait / 5
	g.exec(context.Background(), grouped(e.fetch(c, 1), grouping{wait: time.Hour, interval: time.Hour, repeat: time.Hour}))
	for end := time.Now().Add(3 * ackWait); time.Now().Before(end); time.Sleep(ackWait / 10) {
		g.keepAlive()
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 1 {
		t.Errorf("after 3 ack waits held: %d redelivered, %d pending; want none redelivered, 1 pending", info.NumRedelivered, info.NumAckPending)
	}
	g.release()
	if again := e.fetch(c, 1); again[0].attempts() != 2 {
		t.Errorf("released alert came back as attempt %d, want 2", again[0].attempts())
	}
	if len(g.groups) != 0 {
		t.Error("released groups are still held")
	}
}
