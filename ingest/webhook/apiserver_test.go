package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	auditwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"

	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

func apiserverEvent(prefix string, i int) *auditinternal.Event {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return &auditinternal.Event{
		Level:                    auditinternal.LevelRequest,
		AuditID:                  types.UID(fmt.Sprintf("%s-%08d", prefix, i)),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               fmt.Sprintf("/api/v1/namespaces/team-%d/pods", i%7),
		Verb:                     "create",
		User:                     authnv1.UserInfo{Username: "system:serviceaccount:ci:deployer", Groups: []string{"system:serviceaccounts"}},
		SourceIPs:                []string{"10.0.0.9"},
		UserAgent:                "kubectl/v1.33.0",
		ObjectRef:                &auditinternal.ObjectReference{Resource: "pods", Namespace: fmt.Sprintf("team-%d", i%7), APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: 201},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(now.Add(2 * time.Millisecond)),
	}
}

// fastRetry is the apiserver's webhook retry policy, with shorter delays
// (its default starts at 10s).
var fastRetry = wait.Backoff{Duration: 50 * time.Millisecond, Factor: 1.5, Jitter: 0.1, Steps: 40, Cap: time.Second}

// mtlsServer starts a receiver that requires client certificates and
// returns it with the kubeconfig vigil ships for kube-apiserver, pointed at
// it.
func mtlsServer(t *testing.T, env *jsEnv, p *pkitest.PKI, cfg Options, logger *slog.Logger) (*Server, string) {
	cfg.TLS = tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.CAFile}
	s := runServer(t, cfg, env.pub, logger)
	return s, shippedKubeconfig(t, "https://"+s.Addr().String()+"/audit", p)
}

func TestApiserverWebhookBackendDeliversEveryEventOnceOverMTLS(t *testing.T) {
	env := newJS(t)
	p := pkitest.New(t)
	_, kc := mtlsServer(t, env, p, Options{}, nil)

	delegate, err := auditwebhook.NewBackend(kc, auditv1.SchemeGroupVersion, fastRetry, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Batch mode, as --audit-webhook-mode=batch sets it up.
	backend := buffered.NewBackend(delegate, buffered.BatchConfig{
		BufferSize: 10_000, MaxBatchSize: 400, MaxBatchWait: 20 * time.Millisecond, AsyncDelegate: true,
	})
	stop := make(chan struct{})
	if err := backend.Run(stop); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	const n = 3_000
	for i := range n {
		ev := apiserverEvent("mtls", i)
		want[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		backend.ProcessEvents(ev)
	}
	close(stop)
	backend.Shutdown() // flushes what is buffered, waits for the requests

	env.expectExactlyOnce(t, want)
}

func TestClientsWithoutValidCertificateOrTokenAreRefused(t *testing.T) {
	env := newJS(t)
	p := pkitest.New(t)
	s, _ := mtlsServer(t, env, p, Options{}, nil)
	url := "https://" + s.Addr().String() + "/audit"
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`

	post := func(certs ...tls.Certificate) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: certs}}}
		defer c.CloseIdleConnections()
		resp, err := c.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := post(p.ClientCert); err != nil {
		t.Fatalf("client with a certificate of the CA refused: %v", err)
	}
	if err := post(); err == nil {
		t.Error("client without certificate accepted")
	}
	other := pkitest.New(t)
	if err := post(other.ClientCert); err == nil {
		t.Error("client with a certificate of another CA accepted")
	}

	// Bearer token, as the apiserver sends it with "token:" in its kubeconfig.
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := runServer(t, Options{TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile}, BearerTokenFile: tokenFile}, env.pub, nil)
	turl := "https://" + ts.Addr().String() + "/"
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Basic czNjcmV0LXRva2Vu", http.StatusUnauthorized},
		{"Bearer s3cret-token", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodPost, turl, strings.NewReader(body))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}

	// The apiserver's own client with the token reaches it too.
	kc := kubeconfig(t, turl, p.CAFile, "    token: s3cret-token")
	backend, err := auditwebhook.NewBackend(kc, auditv1.SchemeGroupVersion, fastRetry, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := apiserverEvent("token", 1)
	if !backend.ProcessEvents(ev) {
		t.Fatal("apiserver webhook backend with the right token failed")
	}
	env.expectExactlyOnce(t, map[string]bool{string(ev.AuditID) + "/ResponseComplete": true})
}

func TestWhileNATSIsDownTheReceiverAnswers503AndTheApiserverRetriesDeliverAll(t *testing.T) {
	env := newJS(t)
	p := pkitest.New(t)
	var refused atomic.Int64
	logger := slog.New(&countRefusals{Handler: testLogger(t).Handler(), status: http.StatusServiceUnavailable, n: &refused})
	s, kc := mtlsServer(t, env, p, Options{WriteTimeout: time.Second}, logger)
	backend, err := auditwebhook.NewBackend(kc, auditv1.SchemeGroupVersion, fastRetry, nil)
	if err != nil {
		t.Fatal(err)
	}

	env.srv.Shutdown()
	env.srv.WaitForShutdown()

	// What the apiserver sees meanwhile: a 5xx it retries.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{p.ClientCert}}}}
	defer c.CloseIdleConnections()
	want := map[string]bool{}
	var events []*auditinternal.Event
	for i := range 500 {
		ev := apiserverEvent("outage", i)
		want[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		events = append(events, ev)
	}
	// The probe is an event of its own: the client library may still
	// deliver what it buffered when NATS returns. A segment's MsgID is
	// that of its batch, so an event of the probe repeated in the
	// apiserver's batch would be stored twice (harmless: alerts and
	// thresholds count an auditID once), and this test is about the batch.
	probe := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"outage-probe","stage":"ResponseComplete","verb":"create"}]}`
	resp, err := c.Post("https://"+s.Addr().String()+"/", "application/json", strings.NewReader(probe))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("with NATS down: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	delivered := make(chan bool, 1)
	go func() { delivered <- backend.ProcessEvents(events...) }()
	// Only once the apiserver's first attempt was refused does NATS come
	// back, so that its retries are what delivers the batch.
	waitFor(t, "the apiserver's attempt to be refused", func() bool { return refused.Load() >= 2 })
	env.restart(t)
	select {
	case ok := <-delivered:
		if !ok {
			t.Fatal("the apiserver backend gave up: its retries did not get the batch stored")
		}
	case <-time.After(waitTimeout):
		t.Fatal("the apiserver backend did not finish")
	}
	if n := natstest.StoredAudit(t, env.js)["outage-probe/ResponseComplete"]; n > 0 {
		want["outage-probe/ResponseComplete"] = true
	}
	env.expectExactlyOnce(t, want)
}

// countRefusals counts the receiver's log records of refused requests with
// one status: what the client saw, observed from the server side.
type countRefusals struct {
	slog.Handler
	status int
	n      *atomic.Int64
}

func (h *countRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "audit webhook request refused" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "status" && a.Value.Int64() == int64(h.status) {
				h.n.Add(1)
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return &countRefusals{Handler: h.Handler.WithAttrs(as), status: h.status, n: h.n}
}

func (h *countRefusals) WithGroup(name string) slog.Handler {
	return &countRefusals{Handler: h.Handler.WithGroup(name), status: h.status, n: h.n}
}

func TestRenewedCertificateAndTokenApplyWithoutRestart(t *testing.T) {
	env := newJS(t)
	p := pkitest.New(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := runServer(t, Options{TLS: tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.CAFile}, BearerTokenFile: tokenFile}, env.pub, nil)
	s.creds.mu.Lock()
	s.creds.every = 0 // check the files on every use
	s.creds.mu.Unlock()

	// post makes a fresh connection and returns the status and the serial
	// number of the certificate the receiver presented.
	post := func(token string) (int, string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{p.ClientCert}}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addr().String()+"/", strings.NewReader(`{"kind":"EventList","items":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	// replace writes new content to a file in place, as a renewal does.
	later := time.Now().Add(time.Minute)
	replace := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		later = later.Add(time.Minute) // mtimes must differ whatever the clock's resolution
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
	}

	code, first := post("first-token")
	if code != 200 {
		t.Fatalf("status %d, want 200", code)
	}

	renewedCert, renewedKey, _ := p.Issue(t, "renewed", &x509.Certificate{
		Subject: pkix.Name{CommonName: "vigil"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	for from, to := range map[string]string{renewedCert: p.CertFile, renewedKey: p.KeyFile} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		replace(to, data)
	}
	replace(tokenFile, []byte("second-token\n"))

	code, second := post("second-token")
	if code != 200 || second == first {
		t.Fatalf("after renewal: status %d, certificate serial %s (before %s); want 200 and the renewed certificate", code, second, first)
	}
	if code, _ := post("first-token"); code != http.StatusUnauthorized {
		t.Errorf("the replaced token is still accepted: status %d", code)
	}

	// A broken renewal keeps the working credentials.
	replace(p.KeyFile, []byte("not a key"))
	if code, serial := post("second-token"); code != 200 || serial != second {
		t.Errorf("after a broken key file: status %d, serial %s; want 200 with the previous certificate %s", code, serial, second)
	}
}
