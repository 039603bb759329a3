package webhook

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// credentials are the receiver's TLS identity, the CA its clients must be
// signed by and the bearer token, each re-read when its file changes (see
// tlsconfig.Reloader, which the metrics endpoint shares). A change that
// does not load keeps the previous credentials and is logged.
type credentials struct {
	r *tlsconfig.Reloader

	mu sync.Mutex
	// every is how often the files are checked; tests set 0 to check them
	// on every use.
	every time.Duration
}

func newCredentials(tlsFiles tlsconfig.Files, tokenFile string, log *slog.Logger) (*credentials, error) {
	r, err := tlsconfig.NewReloader(tlsFiles, tokenFile, log, "http/1.1")
	if err != nil {
		return nil, err
	}
	return &credentials{r: r, every: tlsconfig.DefaultCheckInterval}, nil
}

// current returns the credentials, reloading them first if their files
// changed since the last check.
func (c *credentials) current() (*tls.Config, []byte) {
	c.mu.Lock()
	every := c.every
	c.mu.Unlock()
	c.r.SetInterval(every)
	return c.r.Current()
}
