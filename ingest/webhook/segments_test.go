package webhook

import (
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
)

// TestTheSameEventListSentTwiceIsStoredOnceInSegments is kube-apiserver
// sending a batch again, as it does when its first attempt timed out after
// vigil stored it: AUDIT holds each event once, in segments of at most
// segment_max_events, because the batch is cut the same way again and each
// segment's MsgID is that of its events.
func TestTheSameEventListSentTwiceIsStoredOnceInSegments(t *testing.T) {
	env := newJS(t)
	p := pkitest.New(t)
	_, kc := mtlsServer(t, env, p, Options{}, nil)
	backend, err := auditwebhook.NewBackend(kc, auditv1.SchemeGroupVersion, fastRetry, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	want := map[string]bool{}
	var events []*auditinternal.Event
	for i := range n {
		ev := apiserverEvent("twice", i)
		want[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		events = append(events, ev)
	}
	for try := range 2 {
		if !backend.ProcessEvents(events...) {
			t.Fatalf("sending %d: the apiserver backend gave up", try+1)
		}
	}
	env.expectExactlyOnce(t, want)
	msgs := env.messages(t, bus.StreamAudit)
	if want := (n + bus.DefaultSegmentEvents - 1) / bus.DefaultSegmentEvents; len(msgs) != want {
		t.Errorf("AUDIT holds %d messages, want %d segments of up to %d events", len(msgs), want, bus.DefaultSegmentEvents)
	}
	for _, m := range msgs {
		if m.Headers().Get(bus.HeaderSegment) != bus.SegmentFormat {
			t.Fatalf("AUDIT message %s is not a segment: headers %v", m.Headers().Get("Nats-Msg-Id"), m.Headers())
		}
	}
	if got := natstest.CountAuditEvents(t, env.js); got != n {
		t.Errorf("AUDIT holds %d events, want %d", got, n)
	}
}
