package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// TestStartsBeforeNATS starts vigil against a NATS that is not running
// yet: it waits, says at once where it cannot connect and why, and once
// NATS is up provisions JetStream and alerts as usual, without a restart.
func TestStartsBeforeNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	s := newSink(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
nats: {url: "nats://127.0.0.1:%d"}
ingest:
  files: [{path: %s, poll_interval: 20ms}]
destinations:
  - {name: sink, type: webhook, url: %q}
`, filepath.Join(dir, "data"), port, logPath, s.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	a, err := app.New(cfg, app.RoleAll, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	url := fmt.Sprintf("url=nats://127.0.0.1:%d", port)
	waiting := func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "cannot connect to NATS") && strings.Contains(line, url) && strings.Contains(line, "connection refused") {
				return true
			}
		}
		return false
	}
	// Well before the 10s a JetStream request to a NATS not there takes to
	// time out.
	deadline := time.Now().Add(5 * time.Second)
	for !waiting() {
		select {
		case err := <-done:
			t.Fatalf("Run ended while NATS was down: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sign of waiting for NATS:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	natstest.RunServerWith(t, &server.Options{Port: port})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("Run ended: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("not ready 60s after NATS came up:\n%s", logs.String())
	}
	appendLines(t, logPath,
		event("late-1", "ResponseComplete", "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", "web", 200))
	s.waitFor(t, "deployment-deleted-in-default/late-1")
}
