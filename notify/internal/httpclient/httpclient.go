// Package httpclient builds the HTTP clients of the receivers that post to
// a configured URL: TLS material is loaded once, at construction, and
// redirects are never followed.
package httpclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// Options are what a receiver's client is built from.
type Options struct {
	// Name prefixes errors ("webhook", "alertmanager", …).
	Name string
	// CAFile verifies the server's certificate; CertFile/KeyFile are the
	// client certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
	// Timeout bounds one request, connection included.
	Timeout time.Duration
}

// New builds a client, loading TLS material now so that a bad file is a
// startup error rather than a failure on the first alert.
func New(o Options) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
		tc, err := tlsConfig(o)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		// A receiver that redirects could send the body and its credentials
		// to a host nobody configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: tls.ca: %w", o.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: tls.ca: no PEM certificate in %s", o.Name, o.CAFile)
		}
		tc.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New(o.Name + ": tls.cert and tls.key must be set together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: tls client certificate: %w", o.Name, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
