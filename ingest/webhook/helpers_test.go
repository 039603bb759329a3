package webhook

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog, pulled in by the apiserver's webhook backend, flushes from
		// a goroutine started in its init.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

const waitTimeout = 20 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// jsEnv is a real JetStream server with vigil's streams.
type jsEnv struct {
	srv   *server.Server
	store string
	port  int
	js    jetstream.JetStream
	pub   *bus.Publisher
}

func newJS(t testing.TB) *jsEnv {
	t.Helper()
	store := t.TempDir()
	srv := natstest.RunServerWith(t, &server.Options{StoreDir: store})
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return &jsEnv{srv: srv, store: store, port: srv.Addr().(*net.TCPAddr).Port, js: js, pub: bus.NewSegmentPublisher(js, "test", bus.SegmentOptions{})}
}

// restart brings a stopped server back on the same port and store.
func (e *jsEnv) restart(t testing.TB) {
	t.Helper()
	e.srv = natstest.RunServerWith(t, &server.Options{StoreDir: e.store, Port: e.port})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, waitTimeout, what, cond)
}

func (e *jsEnv) messages(t testing.TB, stream string) []jetstream.Msg {
	t.Helper()
	return natstest.Messages(t, e.js, stream)
}

// expectExactlyOnce checks that AUDIT holds every auditID/stage of want
// once and nothing else.
func (e *jsEnv) expectExactlyOnce(t testing.TB, want map[string]bool) {
	t.Helper()
	natstest.ExpectAuditExactlyOnce(t, e.js, want)
}

// kubeconfig writes the webhook kubeconfig kube-apiserver is given with
// --audit-webhook-config-file; user is the "user:" entry's fields.
func kubeconfig(t testing.TB, server, caFile, user string) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: kube-apiserver
  user:
%s
contexts:
- name: default
  context:
    cluster: vigil
    user: kube-apiserver
current-context: default
`, server, caFile, user)
	path := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// shippedKubeconfig is deploy/apiserver/webhook.kubeconfig with its server
// and certificate paths replaced by the test's.
func shippedKubeconfig(t testing.TB, server string, p *pkitest.PKI) string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/apiserver/webhook.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	kc := string(data)
	for from, to := range map[string]string{
		"https://10.96.0.50:8443/audit":             server,
		"/etc/kubernetes/audit/ca.crt":              p.CAFile,
		"/etc/kubernetes/audit/apiserver-audit.crt": p.ClientCertFile,
		"/etc/kubernetes/audit/apiserver-audit.key": p.ClientKeyFile,
	} {
		if !strings.Contains(kc, from) {
			t.Fatalf("the shipped webhook kubeconfig no longer holds %q", from)
		}
		kc = strings.ReplaceAll(kc, from, to)
	}
	path := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runServer starts a receiver on a random port and stops it when the test
// ends, checking that it stopped cleanly.
func runServer(t testing.TB, cfg Options, pub *bus.Publisher, logger *slog.Logger) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if logger == nil {
		logger = testLogger(t)
	}
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, pub) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
