package webhook

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

	"github.com/vigil-k8s/vigil/internal/config"
)

// reloadCheckInterval is how often the credential files are checked for
// changes. Certificates issued by cert-manager or mounted from a Secret are
// replaced in place; picking them up needs no restart.
const reloadCheckInterval = 10 * time.Second

// credentials are the receiver's TLS identity, the CA its clients must be
// signed by and the bearer token, each re-read when its file changes. A
// change that does not load (a half-written file, a key that does not
// match) keeps the previous credentials and is logged.
type credentials struct {
	tlsFiles  config.TLS
	tokenFile string
	log       *slog.Logger

	mu      sync.Mutex
	every   time.Duration
	checked time.Time
	stamp   string
	tls     *tls.Config // nil without TLS
	token   []byte      // nil without a token
}

func newCredentials(tlsFiles config.TLS, tokenFile string, log *slog.Logger) (*credentials, error) {
	c := &credentials{tlsFiles: tlsFiles, tokenFile: tokenFile, log: log, every: reloadCheckInterval}
	c.stamp = c.fileStamp()
	if err := c.load(); err != nil {
		return nil, err
	}
	c.checked = time.Now()
	return c, nil
}

func (c *credentials) files() []string {
	var out []string
	for _, f := range []string{c.tlsFiles.Cert, c.tlsFiles.Key, c.tlsFiles.ClientCA, c.tokenFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// fileStamp identifies the current content of the files by size and
// modification time (a Secret volume swaps a symlink, which changes both).
func (c *credentials) fileStamp() string {
	var b strings.Builder
	for _, f := range c.files() {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", f)
		}
	}
	return b.String()
}

// load reads every file and replaces the credentials only if all load.
func (c *credentials) load() error {
	var tc *tls.Config
	if c.tlsFiles.Cert != "" || c.tlsFiles.Key != "" {
		var err error
		if tc, err = serverTLS(c.tlsFiles); err != nil {
			return err
		}
	}
	var token []byte
	if c.tokenFile != "" {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("bearer_token_file: %w", err)
		}
		token = []byte(strings.TrimSpace(string(data)))
		if len(token) == 0 {
			return fmt.Errorf("bearer_token_file %s is empty", c.tokenFile)
		}
	}
	c.tls, c.token = tc, token
	return nil
}

// current returns the credentials, reloading them first if their files
// changed since the last check.
func (c *credentials) current() (*tls.Config, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.every {
		c.checked = now
		if stamp := c.fileStamp(); stamp != c.stamp {
			if err := c.load(); err != nil {
				c.log.Error("credential files changed but do not load; keeping the previous ones", "err", err)
			} else {
				c.stamp = stamp
				c.log.Info("reloaded changed credential files", "files", c.files())
			}
		}
	}
	return c.tls, c.token
}

func serverTLS(c config.TLS) (*tls.Config, error) {
	if c.Cert == "" || c.Key == "" {
		return nil, errors.New("tls.cert and tls.key must be set together")
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls.cert %s / tls.key %s: %w", c.Cert, c.Key, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca %s holds no PEM certificate", c.ClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
