// Package tlsconfig builds vigil's TLS configurations — TLS 1.2 or later
// with Go's default (AEAD, forward-secret) cipher suites — and keeps server
// credentials current: certificates, client CAs and bearer tokens issued by
// cert-manager or mounted from a Secret are replaced in place, and a
// listener picks them up without a restart.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// MinVersion is the oldest TLS version any vigil listener or client
// accepts.
const MinVersion = tls.VersionTLS12

// CipherSuites are the TLS 1.2 suites vigil accepts: forward-secret key
// exchange (ECDHE) with an AEAD cipher, as in Mozilla's "intermediate"
// profile. Go's defaults would also take CBC suites with SHA-1 MACs. TLS
// 1.3 suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Files names the PEM files of a certificate set. For clients: CA verifies
// the server, Cert/Key are the client identity. For servers: Cert/Key are
// the server identity and ClientCA, when set, requires and verifies client
// certificates.
type Files struct {
	CA, Cert, Key, ClientCA string
}

// Enabled reports whether any file is named.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" || f.ClientCA != "" }

// DefaultCheckInterval is how often a Reloader looks at its files.
const DefaultCheckInterval = 10 * time.Second

// Server loads a server identity (cert, key) and, with c.ClientCA, requires
// and verifies client certificates signed by it. nextProtos are the ALPN
// protocols offered (e.g. "http/1.1"); none for a non-HTTP listener.
func Server(c Files, nextProtos ...string) (*tls.Config, error) {
	if c.Cert == "" || c.Key == "" {
		return nil, errors.New("tls.cert and tls.key must be set together")
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.Cert, c.Key, err)
	}
	tc := &tls.Config{
		MinVersion:   MinVersion,
		CipherSuites: CipherSuites,
		Certificates: []tls.Certificate{cert},
		NextProtos:   nextProtos,
	}
	if c.ClientCA != "" {
		pool, err := pool("tls.client_ca", c.ClientCA)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Client verifies the server with c.CA (the system roots without it) and
// presents c.Cert/c.Key when set.
func Client(c Files) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: MinVersion, CipherSuites: CipherSuites}
	if c.CA != "" {
		p, err := pool("tls.ca", c.CA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = p
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("tls.cert and tls.key must be set together")
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.Cert, c.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func pool(key, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", key, file)
	}
	return p, nil
}

// Reloader holds a listener's credentials — its TLS configuration (nil
// without TLS) and bearer token (nil without one) — and re-reads them when
// their files change, checking at most once per interval. A change that
// does not load (a half-written file, a key that does not match its
// certificate) keeps the previous credentials and is logged.
type Reloader struct {
	tlsFiles   Files
	tokenFile  string
	nextProtos []string
	log        *slog.Logger

	mu       sync.Mutex
	interval time.Duration
	checked  time.Time
	stamp    string
	tls      *tls.Config
	token    []byte
}

// NewReloader loads the credentials once; an error names the file that
// does not load. With neither cert nor key in tlsFiles there is no TLS;
// with tokenFile empty no token.
func NewReloader(tlsFiles Files, tokenFile string, log *slog.Logger, nextProtos ...string) (*Reloader, error) {
	r := &Reloader{tlsFiles: tlsFiles, tokenFile: tokenFile, nextProtos: nextProtos, log: log, interval: DefaultCheckInterval}
	r.stamp = r.fileStamp()
	if err := r.load(); err != nil {
		return nil, err
	}
	r.checked = time.Now()
	return r, nil
}

// SetInterval changes how often the files are checked (0: on every use).
func (r *Reloader) SetInterval(d time.Duration) {
	r.mu.Lock()
	r.interval = d
	r.mu.Unlock()
}

// HasTLS reports whether the listener serves TLS.
func (r *Reloader) HasTLS() bool { return r.tlsFiles.Cert != "" || r.tlsFiles.Key != "" }

// Current returns the credentials, re-reading them first if their files
// changed since the last check.
func (r *Reloader) Current() (*tls.Config, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		if stamp := r.fileStamp(); stamp != r.stamp {
			if err := r.load(); err != nil {
				r.log.Error("credential files changed but do not load; keeping the previous ones", "err", err)
			} else {
				r.stamp = stamp
				r.log.Info("reloaded changed credential files", "files", r.files())
			}
		}
	}
	return r.tls, r.token
}

// TLSConfig is a server configuration whose every handshake uses the
// current credentials, so that a renewed certificate applies to the next
// connection; nil without TLS.
func (r *Reloader) TLSConfig() *tls.Config {
	if !r.HasTLS() {
		return nil
	}
	first, _ := r.Current()
	return &tls.Config{
		MinVersion:   MinVersion,
		CipherSuites: CipherSuites,
		NextProtos:   r.nextProtos,
		// Servers that look at the top-level configuration (NATS tells
		// clients whether it verifies them) see the configured policy.
		ClientAuth: first.ClientAuth,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			tc, _ := r.Current()
			return tc, nil
		},
	}
}

func (r *Reloader) files() []string {
	var out []string
	for _, f := range []string{r.tlsFiles.Cert, r.tlsFiles.Key, r.tlsFiles.ClientCA, r.tokenFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// fileStamp identifies the current content of the files by size and
// modification time (a Secret volume swaps a symlink, which changes both).
func (r *Reloader) fileStamp() string {
	var b strings.Builder
	for _, f := range r.files() {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", f)
		}
	}
	return b.String()
}

// load reads every file and replaces the credentials only if all load.
func (r *Reloader) load() error {
	var tc *tls.Config
	if r.HasTLS() {
		var err error
		if tc, err = Server(r.tlsFiles, r.nextProtos...); err != nil {
			return err
		}
	}
	var token []byte
	if r.tokenFile != "" {
		data, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return fmt.Errorf("bearer_token_file: %w", err)
		}
		token = []byte(strings.TrimSpace(string(data)))
		if len(token) == 0 {
			return fmt.Errorf("bearer_token_file %s is empty", r.tokenFile)
		}
	}
	r.tls, r.token = tc, token
	return nil
}
