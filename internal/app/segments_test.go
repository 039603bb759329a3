package app_test

import (
	"fmt"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// TestAnEventListSentTwiceRaisesEachAlertOnce is kube-apiserver's webhook
// backend sending the same batch twice, as after a timeout on its side:
// vigil stores the batch's segments once, evaluates each event once and
// delivers each alert once.
func TestAnEventListSentTwiceRaisesEachAlertOnce(t *testing.T) {
	r, sink, hookURL, base := startWebhookRun(t)
	defer r.stop(t)
	backend := webhookBackend(t, hookURL)
	// More events than a segment holds, so that the batch is several.
	const n = 150
	now := time.Now()
	var events []*auditinternal.Event
	var want []string
	for i := range n {
		ev := &auditinternal.Event{
			Level:                    auditinternal.LevelMetadata,
			AuditID:                  types.UID(fmt.Sprintf("twice-%04d", i)),
			Stage:                    auditinternal.StageResponseComplete,
			RequestURI:               fmt.Sprintf("/api/v1/namespaces/prod/secrets/db-%d", i),
			Verb:                     "get",
			User:                     authnv1.UserInfo{Username: "system:serviceaccount:ci:bot", Groups: []string{"system:authenticated"}},
			SourceIPs:                []string{"10.0.3.4"},
			UserAgent:                "kubectl/v1.33.0",
			ObjectRef:                &auditinternal.ObjectReference{Resource: "secrets", Namespace: "prod", Name: fmt.Sprintf("db-%d", i), APIVersion: "v1"},
			ResponseStatus:           &metav1.Status{Code: 200},
			RequestReceivedTimestamp: metav1.NewMicroTime(now),
			StageTimestamp:           metav1.NewMicroTime(now.Add(time.Millisecond)),
		}
		events = append(events, ev)
		want = append(want, alert.ID("adv-secret-read", string(ev.AuditID)))
	}
	for try := range 2 {
		if !backend.ProcessEvents(events...) {
			t.Fatalf("sending %d: the apiserver backend gave up", try+1)
		}
	}
	sink.waitFor(t, 30*time.Second, want...)
	deadline := time.Now().Add(30 * time.Second)
	for metricNumber(t, scrape(t, base), "vigil_engine_events_total") < n {
		if time.Now().After(deadline) {
			t.Fatalf("engine evaluated %v of %d events within 30s", metricNumber(t, scrape(t, base), "vigil_engine_events_total"), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Anything sent twice would be evaluated, and delivered, by now.
	time.Sleep(time.Second)
	if got := metricNumber(t, scrape(t, base), "vigil_engine_events_total"); got != n {
		t.Errorf("vigil_engine_events_total = %v, want %d: the second batch was stored again", got, n)
	}
	// The copy shows as duplicates, not as events stored.
	body := scrape(t, base)
	for sample, want := range map[string]float64{
		`vigil_ingest_events_total{cluster="adv",source="webhook"}`:     n,
		`vigil_ingest_duplicates_total{cluster="adv",source="webhook"}`: n,
	} {
		if got := metricNumber(t, body, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	got := sink.snapshot()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d alerts delivered, want %d", len(got), len(want))
	}
}
