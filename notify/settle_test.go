package notify

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// A dead letter carries the alert as it was stored and its reason as one
// bounded line of valid UTF-8; the original is acknowledged.
func TestDeadLetterCarriesTheAlertAndOneLineOfReason(t *testing.T) {
	e := newEnv(t)
	a := alerttest.Sample()
	it := e.fetched("siem", a)[0]
	s := e.settler("siem")

	s.deadLetter(context.Background(), it.msg, a.ID, "first line\nsecond \xff line"+strings.Repeat("x", 2*maxReasonLen))
	waitFor(t, "the original acknowledged", e.settled("siem"))
	dl := e.deadLetters("siem")
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	if string(dl[0].Data) != string(it.msg.Data()) {
		t.Errorf("dead letter data %q, want the stored alert", dl[0].Data)
	}
	r := dl[0].Header.Get(bus.HeaderReason)
	if !strings.HasPrefix(r, "first line second ? line") || len(r) > maxReasonLen || strings.Contains(r, "\n") {
		t.Errorf("reason %q: want one line of at most %d bytes", r[:min(len(r), 60)], maxReasonLen)
	}
	if n := testutil.ToFloat64(s.dead); n != 1 {
		t.Errorf("dead letters counted %v, want 1", n)
	}
}
