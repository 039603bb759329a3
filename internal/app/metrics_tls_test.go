package app_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
)

// TestMetricsEndpointTLS: with metrics.tls the ops endpoint speaks only
// HTTPS, TLS 1.2 or 1.3, with the configured certificate; the bearer token
// still guards /metrics, and with client_ca /metrics also requires a
// client certificate signed by it while the probes stay open.
func TestMetricsEndpointTLS(t *testing.T) {
	p := pkitest.New(t)
	for _, mtls := range []bool{false, true} {
		t.Run(fmt.Sprintf("client_ca=%v", mtls), func(t *testing.T) {
			dir := t.TempDir()
			tokenFile := filepath.Join(dir, "metrics-token")
			if err := os.WriteFile(tokenFile, []byte("scrape-t0ken\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := advConfig(t, dir, "")
			cfg.Metrics.BearerTokenFile = tokenFile
			cfg.Metrics.TLS.Cert, cfg.Metrics.TLS.Key = p.CertFile, p.KeyFile
			if mtls {
				cfg.Metrics.TLS.ClientCA = p.CAFile
			}
			logs := &logtest.Buffer{}
			r := startOpts(t, cfg, logs)
			defer r.stop(t)
			addr := r.app.MetricsAddr().String()

			get := func(scheme, path, token string, tc *tls.Config) (int, string, error) {
				t.Helper()
				tr := &http.Transport{TLSClientConfig: tc}
				defer tr.CloseIdleConnections()
				req, _ := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), nil
			}
			client := func(minV, maxV uint16) *tls.Config {
				tc := &tls.Config{RootCAs: p.Pool, MinVersion: minV, MaxVersion: maxV}
				if mtls {
					tc.Certificates = []tls.Certificate{p.ClientCert}
				}
				return tc
			}

			// Plain HTTP gets no metrics (Go answers 400 on a TLS port).
			if code, body, err := get("http", "/metrics", "scrape-t0ken", nil); err == nil && (code == http.StatusOK || strings.Contains(body, "vigil_")) {
				t.Errorf("plain HTTP: %d, metrics served", code)
			}
			if _, _, err := get("https", "/healthz", "", client(tls.VersionTLS10, tls.VersionTLS11)); err == nil || !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("TLS 1.1: %v, want refused for its version", err)
			}
			if _, _, err := get("https", "/healthz", "", &tls.Config{}); err == nil {
				t.Error("a client that does not trust the CA connected")
			}
			for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
				code, body, err := get("https", "/metrics", "scrape-t0ken", client(v, v))
				if err != nil || code != http.StatusOK || !strings.Contains(body, "vigil_engine_events_total") {
					t.Errorf("%s with the token: %d, %v", tls.VersionName(v), code, err)
				}
				if code, _, err := get("https", "/metrics", "", client(v, v)); err != nil || code != http.StatusUnauthorized {
					t.Errorf("%s without the token: %d, %v; want 401", tls.VersionName(v), code, err)
				}
				if code, _, err := get("https", "/readyz", "", client(v, v)); err != nil || code != http.StatusOK {
					t.Errorf("%s /readyz: %d, %v; want 200 without a token", tls.VersionName(v), code, err)
				}
			}
			if mtls {
				// Without a client certificate: /metrics refused even with
				// the token, the probes (the kubelet has no certificate) open.
				noCert := &tls.Config{RootCAs: p.Pool}
				if code, _, err := get("https", "/metrics", "scrape-t0ken", noCert); err != nil || code != http.StatusForbidden {
					t.Errorf("/metrics without a client certificate: %d, %v; want 403", code, err)
				}
				if code, _, err := get("https", "/readyz", "", noCert); err != nil || code != http.StatusOK {
					t.Errorf("/readyz without a client certificate: %d, %v; want 200", code, err)
				}
				// A certificate from another CA is refused in the handshake.
				other := pkitest.New(t)
				if _, _, err := get("https", "/healthz", "", &tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{other.ClientCert}}); err == nil {
					t.Error("a client certificate from another CA: connected, want refused")
				}
			}
			if strings.Contains(logs.String(), "scrape-t0ken") {
				t.Error("the metrics token appears in the logs")
			}
		})
	}
}
