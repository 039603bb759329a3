package bus_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSecured starts the embedded server as `vigil run` does with cfg,
// and checks that vigil's own in-process connection still provisions.
func startSecured(t *testing.T, cfg bus.ListenSecurity, logs *strings.Builder) *bus.Embedded {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, nil))
	opt, err := bus.WithListenSecurity(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := bus.StartEmbedded(t.TempDir(), cfg.Listen, logger, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, js, err := bus.Connect("", emb.ConnectOptions()...)
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatalf("in-process provisioning: %v", err)
	}
	raw, err := audit.ParseRaw([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a-1","stage":"ResponseComplete","verb":"get"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.NewPublisher(js, "c1").Publish(ctx, []audit.Raw{raw}); err != nil {
		t.Fatalf("in-process publish: %v", err)
	}
	return emb
}

// refused connects once, without retrying, and reports the error.
func refused(t *testing.T, url string, opts ...nats.Option) error {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
	if err == nil {
		nc.Close()
	}
	return err
}

// plainSession speaks the NATS protocol without TLS, with the right
// password (which a network observer would read), and reports whether the
// server answered its PING.
func plainSession(t *testing.T, addr, user, pass string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("server INFO does not require TLS: %s", info)
	}
	fmt.Fprintf(conn, "CONNECT {\"user\":%q,\"pass\":%q,\"verbose\":false,\"tls_required\":false}\r\nPING\r\n", user, pass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(line, "PONG") {
			return true
		}
		if strings.HasPrefix(line, "-ERR") {
			return false
		}
	}
}

// consumeOne is what a `vigil worker` joining with wcfg does first: connect
// with bus.ClientOptions, bind the engine's consumer and fetch an event.
func consumeOne(t *testing.T, url string, wcfg bus.Credentials) {
	t.Helper()
	opts, err := bus.ClientOptions(wcfg, "vigil-worker-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := bus.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := bus.EnsureConsumer(ctx, js, bus.StreamAudit, jetstream.ConsumerConfig{Durable: "listen-test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("worker-style client: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		_ = m.Ack()
	}
	if n != 1 || batch.Error() != nil {
		t.Fatalf("worker-style client fetched %d events (%v), want 1", n, batch.Error())
	}
}

// TestEmbeddedListenRequiresPasswordAndTLS: with nats.user and nats.tls,
// the embedded server's listener refuses clients without the password, with
// a wrong one, without TLS and with TLS 1.1, and serves a `vigil worker`
// configured with the same credentials and the CA.
func TestEmbeddedListenRequiresPasswordAndTLS(t *testing.T) {
	p := pkitest.New(t)
	const pw = "correct horse battery staple"
	cfg := bus.ListenSecurity{Listen: freeLoopback(t), User: "vigil", Password: pw, TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile}}
	var logs strings.Builder
	emb := startSecured(t, cfg, &logs)
	url := emb.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Errorf("client URL %q, want tls://", url)
	}
	good := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	for name, opts := range map[string][]nats.Option{
		"no credentials": {nats.Secure(good)},
		"wrong password": {nats.Secure(good), nats.UserInfo("vigil", "wrong")},
		"TLS 1.1": {nats.UserInfo("vigil", "correct horse battery staple"),
			nats.Secure(&tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})},
	} {
		plain := strings.Replace(url, "tls://", "nats://", 1)
		if err := refused(t, plain, opts...); err == nil {
			t.Errorf("%s: connected, want refused", name)
		}
	}
	if pong := plainSession(t, strings.TrimPrefix(url, "tls://"), "vigil", "correct horse battery staple"); pong {
		t.Error("a plain TCP client with the right password was served, want TLS required")
	}
	consumeOne(t, url, bus.Credentials{User: "vigil", Password: pw, TLS: tlsconfig.Files{CA: p.CAFile}})
	if strings.Contains(logs.String(), "correct horse") {
		t.Error("the NATS password appears in the logs")
	}
}

// TestEmbeddedListenWithNKeyAndClientCertificates: nats.nkey_file and
// nats.tls.client_ca require both a signature with the nkey and a client
// certificate.
func TestEmbeddedListenWithNKeyAndClientCertificates(t *testing.T) {
	p := pkitest.New(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := writeFile(t, "vigil.nk", string(seed))
	cfg := bus.ListenSecurity{Listen: freeLoopback(t), NKeyFile: seedFile, TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.CAFile}}
	var logs strings.Builder
	emb := startSecured(t, cfg, &logs)
	url := emb.ClientURL()
	nkeyOpt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{p.ClientCert}}
	if err := refused(t, url, nats.Secure(withCert)); err == nil {
		t.Error("client certificate without the nkey: connected, want refused")
	}
	if err := refused(t, url, nats.Secure(&tls.Config{RootCAs: p.Pool}), nkeyOpt); err == nil {
		t.Error("nkey without a client certificate: connected, want refused")
	}
	consumeOne(t, url, bus.Credentials{NKeyFile: seedFile, TLS: tlsconfig.Files{CA: p.CAFile, Cert: p.ClientCertFile, Key: p.ClientKeyFile}})
}

// TestEmbeddedListenWarnsWhenReachableWithoutTLS: a listener other
// machines can reach, with a password but no TLS, says so at start-up.
func TestEmbeddedListenWarnsWhenReachableWithoutTLS(t *testing.T) {
	const pw = "s3cret-nats-password"
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skipf("cannot listen on all interfaces: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs strings.Builder
	opt, err := bus.WithListenSecurity(bus.ListenSecurity{Listen: addr, User: "vigil", Password: pw}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || opt == nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "without TLS") {
		t.Errorf("no warning about the missing TLS; logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the NATS password appears in the logs")
	}
}
