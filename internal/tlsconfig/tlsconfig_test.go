package tlsconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// TestReloaderPicksUpRenewedFiles: a renewed certificate and token apply
// on the next use; a renewal that does not load keeps the working ones.
func TestReloaderPicksUpRenewedFiles(t *testing.T) {
	p := pkitest.New(t)
	token := p.Dir + "/token"
	if err := os.WriteFile(token, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := tlsconfig.NewReloader(tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile, ClientCA: p.CAFile}, token, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.SetInterval(0)
	tc, tok := r.Current()
	if string(tok) != "first" || tc.MinVersion != tls.VersionTLS12 || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("token %q, min version %x, client auth %v", tok, tc.MinVersion, tc.ClientAuth)
	}
	first := tc.Certificates[0].Certificate[0]

	later := time.Now().Add(time.Minute)
	replace := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		later = later.Add(time.Minute) // distinct mtimes whatever the clock's resolution
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
	}
	certFile, keyFile, _ := p.Issue(t, "renewed", &x509.Certificate{Subject: pkix.Name{CommonName: "renewed"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	for from, to := range map[string]string{certFile: p.CertFile, keyFile: p.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		replace(to, b)
	}
	replace(token, []byte("second"))
	tc, tok = r.Current()
	if string(tok) != "second" || string(tc.Certificates[0].Certificate[0]) == string(first) {
		t.Fatalf("after renewal: token %q, certificate renewed %v", tok, string(tc.Certificates[0].Certificate[0]) != string(first))
	}
	renewed := tc.Certificates[0].Certificate[0]
	replace(p.KeyFile, []byte("not a key"))
	tc, tok = r.Current()
	if string(tok) != "second" || string(tc.Certificates[0].Certificate[0]) != string(renewed) {
		t.Errorf("a broken key file replaced the working credentials")
	}
}

func TestNoTLSWithoutCertificates(t *testing.T) {
	r, err := tlsconfig.NewReloader(tlsconfig.Files{}, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if r.HasTLS() || r.TLSConfig() != nil {
		t.Error("TLS without a certificate")
	}
	if _, err := tlsconfig.NewReloader(tlsconfig.Files{Cert: "only-a-cert"}, "", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a certificate without a key loaded")
	}
}

// TestServerRefusesOldVersionsAndWeakSuites handshakes with a real
// listener: TLS 1.2 with an AEAD suite and TLS 1.3 work; TLS 1.1, and TLS
// 1.2 offering only a CBC suite, are refused.
func TestServerRefusesOldVersionsAndWeakSuites(t *testing.T) {
	p := pkitest.New(t)
	r, err := tlsconfig.NewReloader(tlsconfig.Files{Cert: p.CertFile, Key: p.KeyFile}, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	dial := func(tc *tls.Config) error {
		tc.RootCAs = p.Pool
		c, err := tls.Dial("tcp", ln.Addr().String(), tc)
		if err == nil {
			c.Close()
		}
		return err
	}
	for name, c := range map[string]struct {
		tc *tls.Config
		ok bool
	}{
		"TLS 1.3":         {&tls.Config{MinVersion: tls.VersionTLS13}, true},
		"TLS 1.2 AES-GCM": {&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		"TLS 1.2 CBC":     {&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		"TLS 1.1":         {&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
	} {
		if err := dial(c.tc); (err == nil) != c.ok {
			t.Errorf("%s: handshake error %v, want success %v", name, err, c.ok)
		}
	}
}
