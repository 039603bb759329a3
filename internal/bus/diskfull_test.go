package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/disktest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

func events(t *testing.T, from, n int) []audit.Raw {
	t.Helper()
	var out []audit.Raw
	for i := from; i < from+n; i++ {
		line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-%d","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/namespaces/default/pods/p-%d"}`, i, i)
		r, err := audit.ParseRaw([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestEmbeddedRecoversWhenDataDirHasSpaceAgain fills the file system of
// the embedded server's store: publishing fails (nothing is acknowledged
// that is not stored), the log names the disk error, and once space is
// freed the server comes back by itself, so that a publisher that retries
// stores every event exactly once.
func TestEmbeddedRecoversWhenDataDirHasSpaceAgain(t *testing.T) {
	dataDir := disktest.Tmpfs(t, "32m")
	logs := &logtest.Buffer{}
	emb, err := bus.StartEmbedded(dataDir, "", slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, js, err := bus.Connect("", emb.ConnectOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := bus.NewPublisher(js, "c1")
	// publish makes one attempt, as the webhook receiver does per request.
	publish := func(batch []audit.Raw) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return pub.Publish(ctx, batch)
	}

	before, during, after := events(t, 0, 200), events(t, 200, 200), events(t, 400, 200)
	if err := publish(before); err != nil {
		t.Fatalf("publish before the disk is full: %v", err)
	}

	ballast := filepath.Join(dataDir, "ballast")
	disktest.Fill(t, ballast)
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		// A write may still fit in a page the store already holds: publish
		// until the disk is really full. What is acknowledged is stored.
		batch := during[i*10 : i*10+10]
		if err := publish(batch); err != nil {
			refused = true
			t.Logf("refused with the disk full: %v", err)
		}
	}
	if !refused {
		t.Fatal("every publish was acknowledged with the disk full")
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("no log line names the disk error:\n%s", logs.String())
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		err := publish(during)
		if err == nil {
			t.Logf("stored after freeing space at attempt %d", attempt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still cannot publish a minute after space was freed: %v\n%s", err, logs.String())
		}
	}
	if err := publish(after); err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
	if n := natstest.Count(t, js, bus.StreamAudit); n != 600 {
		t.Errorf("AUDIT holds %d messages, want each of the 600 events once", n)
	}
	if !strings.Contains(logs.String(), "embedded NATS restarted") {
		t.Errorf("no log line says the server was restarted:\n%s", logs.String())
	}
}
