package notify

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/silence"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// silences opens the silences bucket and follows it until the test ends.
func (e *env) silences() (*silence.Store, *silence.Set) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := silence.Open(ctx, e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	set := st.NewSet(time.Now, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	<-set.Ready()
	return st, set
}

// silence adds a silence that started a moment ago.
func (e *env) silence(st *silence.Store, spec silence.Spec) *silence.Silence {
	e.t.Helper()
	spec.For, spec.Comment, spec.Author = time.Hour, "maintenance", "alice"
	s, err := silence.New(spec, time.Now().Add(-time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.Add(context.Background(), s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// silenced is vigil_alerts_silenced_total for rule.
func (e *env) silenced(rule string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vigil_alerts_silenced_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == rule {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (e *env) silenceStage(dest string, st *silence.Store, set *silence.Set) *silenceStage {
	return &silenceStage{
		set: set, store: st, dest: dest, silenced: e.m.AlertsSilenced, settle: e.settler(dest),
		backoff: defaultBackoff, now: time.Now, logger: slog.New(slog.DiscardHandler),
	}
}

// The stage keeps what a silence holds for from its destination: those
// alerts are acknowledged, recorded and counted once for every
// destination; the others go on.
func TestSilenceStage(t *testing.T) {
	e := newEnv(t)
	st, set := e.silences()
	sil := e.silence(st, silence.Spec{Rule: "secret-read-by-non-node", When: `alert.name in ["db-0", "db-2"]`})
	waitFor(t, "silence in the set", func() bool { return set.Match(alerttest.Many(1)[0], time.Now()) != nil })

	alerts := alerttest.Many(3)
	other := alerttest.Sample()
	other.Rule, other.ID, other.Name = "privileged-container", "privileged-container/x", "db-0"
	alerts = append(alerts, other)
	// Both destinations fetch the same four alerts from ALERTS.
	for _, dest := range []string{"slack", "siem"} {
		out := e.silenceStage(dest, st, set).exec(context.Background(), e.fetched(dest, alerts...))
		if got := ids(out); !slices.Equal(got, []string{alerts[1].ID, other.ID}) {
			t.Errorf("%s: passed on %v, want the two alerts the silence does not hold for", dest, got)
		}
		for _, it := range out {
			e.settler(dest).ack(it.msg)
		}
		waitFor(t, dest+" acknowledged everything", func() bool { return e.ackPending(dest)() == 0 })
	}
	if n := e.silenced("secret-read-by-non-node"); n != 2 {
		t.Errorf("vigil_alerts_silenced_total = %v, want 2: each alert once for both destinations", n)
	}
	recs, err := st.Records(context.Background(), sil.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Silence != sil.ID || r.Rule != "secret-read-by-non-node" || r.At.IsZero() || r.Dest == "" {
			t.Errorf("record %+v", r)
		}
		got = append(got, r.Alert)
	}
	slices.Sort(got)
	if want := []string{alerttest.Many(1)[0].ID, alerttest.Many(3)[2].ID}; !slices.Equal(got, want) {
		t.Errorf("records name %v, want %v", got, want)
	}
	if n := natstest.Count(t, e.js, bus.StreamAlerts); n != 4 {
		t.Errorf("ALERTS holds %d alerts, want the 4 published: silencing leaves them there", n)
	}
}

// Through the dispatcher: a silence in force when it starts holds for
// every destination from the first alert, and once it is expired, alerts
// of the rule are sent again.
func TestDispatcherHonoursSilences(t *testing.T) {
	e := newEnv(t)
	st, _ := e.silences()
	sil := e.silence(st, silence.Spec{Rule: "secret-read-by-non-node"})
	slack, siem := newSink(t), newSink(t)
	e.run(testSetup([]Destination{webhookDest(t, "slack", slack.srv.URL), webhookDest(t, "siem", siem.srv.URL)}))

	kept := alerttest.Many(5)
	other := alerttest.Sample()
	other.Rule, other.ID = "privileged-container", "privileged-container/y"
	e.publish(append(kept, other)...)
	waitFor(t, "everything acknowledged", func() bool { return e.settled("slack")() && e.settled("siem")() })
	for name, sk := range map[string]*sink{"slack": slack, "siem": siem} {
		if got := sk.delivered(t); len(got) != 1 || got[other.ID] != 1 {
			t.Errorf("%s got %v, want only %s", name, got, other.ID)
		}
	}
	if n := e.silenced("secret-read-by-non-node"); n != 5 {
		t.Errorf("vigil_alerts_silenced_total = %v, want 5", n)
	}

	if _, err := st.Expire(context.Background(), sil.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The expiry reaches the dispatcher's watch within moments; until
	// then a new alert may still be silenced, so each try is a new one.
	var after *alert.Alert
	for i := 0; ; i++ {
		after = alerttest.Sample()
		after.AuditID = fmt.Sprintf("after-expiry-%d", i)
		after.ID = alert.ID(after.Rule, after.AuditID)
		e.publish(after)
		waitFor(t, "the alert settled", func() bool { return e.settled("slack")() && e.settled("siem")() })
		if slack.delivered(t)[after.ID] == 1 {
			break
		}
		if i == 50 {
			t.Fatal("alerts of the rule still silenced after the silence was expired")
		}
	}
	if siem.delivered(t)[after.ID] != 1 {
		t.Errorf("siem did not get %s after the expiry", after.ID)
	}
	recs, err := st.Records(context.Background(), sil.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Alert == after.ID {
			t.Errorf("the delivered alert %s is recorded as silenced", after.ID)
		}
	}
	if len(recs) < 5 {
		t.Errorf("the silence recorded %d alerts, want the 5 it kept", len(recs))
	}
}

// An alert delivered before a silence was added, and stored again (a
// repeat past the stream's duplicate window, as a lost ack redelivers
// one), is dropped as delivered, not recorded as kept back by the silence.
func TestSilenceDoesNotClaimAnAlertAlreadyDelivered(t *testing.T) {
	e := newEnv(t)
	st, _ := e.silences()
	slack := newSink(t)
	e.run(testSetup([]Destination{webhookDest(t, "slack", slack.srv.URL)}))

	a := alerttest.Sample()
	e.publish(a)
	waitFor(t, "the alert delivered", func() bool { return slack.delivered(t)[a.ID] == 1 })
	sil := e.silence(st, silence.Spec{Rule: a.Rule})
	// Give the dispatcher's watch the silence: a new alert of the rule is
	// kept back once it has it.
	for i := 0; ; i++ {
		probe := alerttest.Sample()
		probe.AuditID = fmt.Sprintf("probe-%d", i)
		probe.ID = alert.ID(probe.Rule, probe.AuditID)
		e.publish(probe)
		waitFor(t, "the probe settled", e.settled("slack"))
		if slack.delivered(t)[probe.ID] == 0 {
			break
		}
		if i == 50 {
			t.Fatal("the silence never applied")
		}
	}
	before := e.silenced(a.Rule)
	msg, err := engine.AlertMsg(a)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(jetstream.MsgIDHeader, a.ID+"#again")
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the repeat settled", e.settled("slack"))
	if slack.delivered(t)[a.ID] != 1 {
		t.Errorf("the repeat was sent again")
	}
	recs, err := st.Records(context.Background(), sil.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Alert == a.ID {
			t.Errorf("the alert delivered before the silence is recorded as kept back by it")
		}
	}
	if n := e.silenced(a.Rule); n != before {
		t.Errorf("vigil_alerts_silenced_total went from %v to %v for an alert already delivered", before, n)
	}
}
