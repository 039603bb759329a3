package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
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
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/natstest"
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
	if err := bus.EnsureStreams(ctx, js, config.NATS{}); err != nil {
		t.Fatal(err)
	}
	return &jsEnv{srv: srv, store: store, port: srv.Addr().(*net.TCPAddr).Port, js: js, pub: bus.NewPublisher(js, "test")}
}

// restart brings a stopped server back on the same port and store.
func (e *jsEnv) restart(t testing.TB) {
	t.Helper()
	e.srv = natstest.RunServerWith(t, &server.Options{StoreDir: e.store, Port: e.port})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	dir                           string
	caFile, certFile, keyFile     string
	clientCertFile, clientKeyFile string
	pool                          *x509.CertPool
	clientCert                    tls.Certificate
	ca                            *x509.Certificate
	caKey                         *ecdsa.PrivateKey
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vigil-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(caDER)
	p.caKey = caKey
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", caDER)
	p.certFile, p.keyFile, _ = p.issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "vigil"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.clientCertFile, p.clientKeyFile, p.clientCert = p.issue(t, "client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p *pki) issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key := newKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = p.write(t, name+".crt", "CERTIFICATE", der)
	keyFile = p.write(t, name+".key", "EC PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func (p *pki) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
func shippedKubeconfig(t testing.TB, server string, p *pki) string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/apiserver/webhook.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	kc := string(data)
	for from, to := range map[string]string{
		"https://10.96.0.50:8443/audit":             server,
		"/etc/kubernetes/audit/ca.crt":              p.caFile,
		"/etc/kubernetes/audit/apiserver-audit.crt": p.clientCertFile,
		"/etc/kubernetes/audit/apiserver-audit.key": p.clientKeyFile,
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
func runServer(t testing.TB, cfg config.Webhook, pub *bus.Publisher, logger *slog.Logger, opts ...func(*Server)) *Server {
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
	for _, o := range opts {
		o(s)
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
