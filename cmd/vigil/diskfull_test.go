package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/disktest"
)

// eventList is the body kube-apiserver's webhook backend posts.
func eventList(events [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// postBatch posts one EventList once and returns the status (0 when the
// request itself failed) and the body.
func postBatch(client *http.Client, url string, events [][]byte) (int, string) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(eventList(events)))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// chunk splits events into batches of n.
func chunk(events [][]byte, n int) [][][]byte {
	var out [][][]byte
	for i := 0; i < len(events); i += n {
		out = append(out, events[i:min(i+n, len(events))])
	}
	return out
}

// TestRunRecoversFromFullDataDir is "disk full in data_dir": `vigil run`
// keeps its JetStream store and file checkpoints on a small tmpfs, the
// audit log it follows lives elsewhere, and events arrive by file and by
// webhook before, while and after the tmpfs is full. With the disk full the
// webhook answers 503 (the apiserver retries), the process keeps running
// and its log names the disk error; once space is freed it recovers by
// itself, and every event appended or accepted is stored and evaluated:
// each expected alert reaches the sink, and no other.
func TestRunRecoversFromFullDataDir(t *testing.T) {
	bin := vigilBinary(t)
	dataDir := disktest.Tmpfs(t, "64m")
	events := workload(t, 12_000)
	want := expectedAlerts(t, events)
	if len(want) < 30 {
		t.Fatalf("workload raises only %d alerts offline; the attacks are not being detected", len(want))
	}
	// Half of the events come by file, half by webhook, each in thirds:
	// before, during and after the full period.
	half := len(events) / 2
	fileEvents, hookEvents := events[:half], events[half:]
	third := func(evs [][]byte, i int) [][]byte { n := len(evs) / 3; return evs[i*n : min((i+1)*n, len(evs))] }
	lastThird := func(evs [][]byte) [][]byte { n := len(evs) / 3; return evs[2*n:] }

	sink, sinkSrv := newAlertSink(t)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	hookPort, metricsPort, natsPort := freePort(t), freePort(t), freePort(t)
	hookURL := fmt.Sprintf("http://127.0.0.1:%d/audit", hookPort)
	cfgPath := writeRunConfig(t, dataDir, logPath, sinkSrv.URL,
		fmt.Sprintf("  webhook: {listen: \"127.0.0.1:%d\", insecure: true, write_timeout: 4s}\n", hookPort), natsPort, metricsPort)
	p := launch(t, bin, "run", "run", cfgPath, metricsPort)
	p.waitReady(t)
	alive := func(when string) {
		t.Helper()
		select {
		case <-p.exited:
			t.Fatalf("vigil exited %s: %v\n%s", when, p.err, p.logs.String())
		default:
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}

	// Before: everything is accepted.
	if err := appendEvents(logPath, third(fileEvents, 0)); err != nil {
		t.Fatal(err)
	}
	for _, b := range chunk(third(hookEvents, 0), 200) {
		if code, body := postBatch(client, hookURL, b); code != http.StatusOK {
			t.Fatalf("webhook before the disk is full: %d %s", code, body)
		}
	}
	beforeCount := float64(len(third(fileEvents, 0)) + len(third(hookEvents, 0)))
	waitUntil(t, time.Minute, "the first events evaluated", func() bool { return p.eventsEvaluated() >= beforeCount })

	// During: the tmpfs is full.
	ballast := filepath.Join(dataDir, "ballast")
	disktest.Fill(t, ballast)
	if err := appendEvents(logPath, third(fileEvents, 1)); err != nil {
		t.Fatal(err)
	}
	var refused [][][]byte // batches to send again, as the apiserver does
	accepted, refusals := 0, 0
	for _, b := range chunk(third(hookEvents, 1), 500) {
		code, body := postBatch(client, hookURL, b)
		switch {
		case code == http.StatusOK && refusals == 0:
			// Written into space the store already held: stored.
			accepted++
		case code == http.StatusOK:
			t.Errorf("webhook accepted a batch with the disk full after refusing one: %s", body)
		case code == http.StatusServiceUnavailable:
			refusals++
			refused = append(refused, b)
		default:
			t.Errorf("webhook with the disk full: %d %s, want 503 (retryable)", code, body)
			refused = append(refused, b)
		}
	}
	if refusals == 0 {
		t.Fatalf("the webhook accepted all %d batches with the disk full: the fault was not reached", accepted)
	}
	waitUntil(t, 30*time.Second, "a log line naming the disk error", func() bool {
		alive("with the disk full")
		return strings.Contains(p.logs.String(), "no space left on device") &&
			strings.Contains(p.logs.String(), "cannot write to data_dir")
	})
	alive("with the disk full")
	t.Logf("disk full: %d webhook batches accepted before the store failed, %d refused with 503", accepted, refusals)

	// After: space is freed; vigil recovers without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := appendEvents(logPath, lastThird(fileEvents)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	retries := 0
	for _, b := range append(refused, chunk(lastThird(hookEvents), 200)...) {
		for {
			code, body := postBatch(client, hookURL, b)
			if code == http.StatusOK {
				break
			}
			if code != http.StatusServiceUnavailable && code != 0 {
				t.Fatalf("webhook after space was freed: %d %s", code, body)
			}
			retries++
			select {
			case <-ctx.Done():
				t.Fatalf("webhook still refusing 2 minutes after space was freed: %d %s", code, body)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	t.Logf("after freeing space: %d webhook attempts refused while recovering", retries)

	duplicates := expectDelivered(ctx, t, natsPort, sink, want, len(events), func() { alive("while recovering") })
	if !strings.Contains(p.logs.String(), "embedded NATS restarted") {
		t.Errorf("no log line says the embedded server was restarted")
	}
	alive("after recovering")
	t.Logf("%d expected alerts all delivered; %d duplicates", len(want), duplicates)
}
