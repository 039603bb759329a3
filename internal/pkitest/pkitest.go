// Package pkitest makes a throw-away certificate authority with a server
// certificate (for 127.0.0.1 and localhost) and a client certificate, as
// PEM files in a test's temporary folder. It must only be imported by
// tests.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA and the files of the certificates it issued.
type PKI struct {
	Dir    string
	CAFile string
	// Pool holds the CA, for clients verifying the server.
	Pool *x509.CertPool
	// Server identity for 127.0.0.1, ::1 and localhost.
	CertFile, KeyFile string
	// Client identity (CN "vigil-client"), and the same as a tls pair.
	ClientCertFile, ClientKeyFile string
	ClientCert                    tls.Certificate

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// New makes a CA, a server and a client certificate under t.TempDir().
func New(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	p.caKey = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vigil-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(p.ca)
	p.CAFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	p.CertFile, p.KeyFile, _ = p.Issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "vigil"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.ClientCertFile, p.ClientKeyFile, p.ClientCert = p.Issue(t, "client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "vigil-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
}

// Issue signs tmpl (subject, names and key usage filled in by the caller)
// with a fresh key and writes name.crt and name.key.
func (p *PKI) Issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key := newKey(t)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
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

func (p *PKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
