package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	auditwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/logtest"
)

// apiserver is kube-apiserver's own audit webhook backend, in batch mode,
// with a clock off by skew: the events it sends carry its time.
type apiserver struct {
	name    string
	skew    time.Duration
	backend interface {
		ProcessEvents(...*auditinternal.Event) bool
		Shutdown()
	}
	stop chan struct{}
	seq  int
}

func startApiserver(t *testing.T, name, url string, skew time.Duration) *apiserver {
	t.Helper()
	b := buffered.NewBackend(webhookBackend(t, url), buffered.BatchConfig{
		BufferSize: 1_000, MaxBatchSize: 400, MaxBatchWait: 20 * time.Millisecond, AsyncDelegate: true,
	})
	a := &apiserver{name: name, skew: skew, backend: b, stop: make(chan struct{})}
	if err := b.Run(a.stop); err != nil {
		t.Fatal(err)
	}
	return a
}

// webhookBackend is kube-apiserver's audit webhook backend posting to url,
// each ProcessEvents one request, retried as the apiserver does (faster).
func webhookBackend(t *testing.T, url string) audit.Backend {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	if err := os.WriteFile(kc, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster: {server: %q}
users:
- name: kube-apiserver
contexts:
- name: default
  context: {cluster: vigil, user: kube-apiserver}
current-context: default
`, url), 0o600); err != nil {
		t.Fatal(err)
	}
	retry := wait.Backoff{Duration: 50 * time.Millisecond, Factor: 1.5, Jitter: 0.1, Steps: 40, Cap: time.Second}
	backend, err := auditwebhook.NewBackend(kc, auditv1.SchemeGroupVersion, retry, nil)
	if err != nil {
		t.Fatal(err)
	}
	return backend
}

// startWebhookRun is vigil with the adversarial rules, receiving on its
// webhook and delivering to a sink; it returns the webhook's and the
// metrics' URLs.
func startWebhookRun(t *testing.T) (r *running, sink *rawSink, hookURL, metricsURL string) {
	t.Helper()
	sink = newRawSink(t)
	hookAddr := freeAddr(t)
	cfg := advConfig(t, t.TempDir(), fmt.Sprintf(`
ingest:
  webhook: {listen: %q, insecure: true}
destinations:
  - {name: sink, type: webhook, url: %q}
`, hookAddr, sink.srv.URL))
	r = startOpts(t, cfg, &logtest.Buffer{})
	return r, sink, "http://" + hookAddr + "/", "http://" + r.app.MetricsAddr().String()
}

// shutdown flushes what the backend buffers and waits for its requests.
func (a *apiserver) shutdown() {
	close(a.stop)
	a.backend.Shutdown()
}

// request logs one completed request at the apiserver's clock and returns
// its auditID.
func (a *apiserver) request(user, verb, resource, ns, name string, code int32) string {
	a.seq++
	now := time.Now().Add(a.skew)
	ev := &auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(fmt.Sprintf("%s-%04d", a.name, a.seq)),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               fmt.Sprintf("/api/v1/namespaces/%s/%s/%s", ns, resource, name),
		Verb:                     verb,
		User:                     authnv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}},
		SourceIPs:                []string{"10.0.3.4"},
		UserAgent:                "kubectl/v1.33.0",
		ObjectRef:                &auditinternal.ObjectReference{Resource: resource, Namespace: ns, Name: name, APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: code},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(now.Add(time.Millisecond)),
	}
	a.backend.ProcessEvents(ev)
	return string(ev.AuditID)
}

// TestClockSkewBetweenApiservers feeds one vigil from three apiservers of
// one cluster whose clocks disagree by an hour each way, as an HA control
// plane with a broken NTP does. What a user checks: no detection is lost
// to the skew — every per-request alert arrives once, a burst of denied
// requests spread over a correct and a fast apiserver alerts once with its
// full count (on the events' own times the fast apiserver's requests push
// the correct one's out of the window), and a burst seen only by a fast or
// only by a slow apiserver alerts once too. Events from the future are
// counted in a metric, so the broken clock shows.
func TestClockSkewBetweenApiservers(t *testing.T) {
	r, sink, url, base := startWebhookRun(t)
	defer r.stop(t)

	servers := []*apiserver{
		startApiserver(t, "on-time", url, 0),
		startApiserver(t, "ahead", url, time.Hour),
		startApiserver(t, "behind", url, -time.Hour),
	}
	onTime, ahead, behind := servers[0], servers[1], servers[2]
	// The alert ids this run must deliver.
	var want []string

	// Per-request detections, from every apiserver.
	for _, a := range servers {
		for i := range 3 {
			id := a.request("system:serviceaccount:ci:bot", "get", "secrets", "prod", fmt.Sprintf("db-%d", i), 200)
			want = append(want, alert.ID("adv-secret-read", id))
		}
	}
	// mallory's 5 denied requests go through two apiservers, one an hour
	// ahead: one burst, one alert counting all five.
	for i := range 5 {
		a := onTime
		if i%2 == 1 {
			a = ahead
		}
		a.request("mallory", "list", "secrets", "kube-system", "", 403)
		time.Sleep(5 * time.Millisecond)
	}
	// trudy probes only through the fast apiserver.
	for range 5 {
		ahead.request("trudy", "list", "secrets", "kube-system", "", 403)
	}
	// oscar's burst comes only from the slow apiserver: its own window.
	for range 5 {
		behind.request("oscar", "list", "secrets", "kube-system", "", 403)
	}
	for _, a := range servers {
		a.shutdown()
	}

	sink.waitFor(t, 30*time.Second, want...)
	// Every event is evaluated before we look for extra alerts.
	total := float64(3*3 + 5 + 5 + 5)
	deadline := time.Now().Add(30 * time.Second)
	for metricNumber(t, scrape(t, base), "vigil_engine_events_total") < total {
		if time.Now().After(deadline) {
			t.Fatalf("engine evaluated %v of %v events within 30s", metricNumber(t, scrape(t, base), "vigil_engine_events_total"), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	bursts := map[string]int{}
	deadline = time.Now().Add(10 * time.Second)
	for len(bursts) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		sink.mu.Lock()
		for _, a := range sink.alerts {
			if a.Rule == "adv-forbidden-burst" {
				bursts[a.User] = a.Count
			}
		}
		sink.mu.Unlock()
	}
	got := sink.snapshot()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("alert %s delivered %d times, want once", id, got[id])
		}
	}
	for _, user := range []string{"mallory", "trudy", "oscar"} {
		if bursts[user] != 5 {
			t.Errorf("burst of %s: alert with count %d, want one alert counting 5 (bursts seen: %v)", user, bursts[user], bursts)
		}
	}
	if n := len(got); n != len(want)+3 {
		t.Errorf("%d alerts delivered, want %d: %v", n, len(want)+3, got)
	}
	if got := metricNumber(t, scrape(t, base), "vigil_engine_future_events_total"); got != 3+2+5 {
		t.Errorf("vigil_engine_future_events_total = %v, want 10 (every event of the fast apiserver)", got)
	}
}
