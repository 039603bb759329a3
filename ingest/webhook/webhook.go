// Package webhook receives what kube-apiserver's audit webhook backend
// (--audit-webhook-config-file) posts: EventList batches, also a single
// Event, as audit.k8s.io/v1 or v1beta1, optionally gzip-compressed.
//
// A batch is answered 200 only after the Publisher has stored every event
// of it. Anything else is an error status the apiserver retries (5xx, 429)
// or a 4xx naming what was wrong, so an event is never acknowledged and
// then lost.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes  = 32 << 20
	DefaultMaxEvents     = 100_000
	DefaultMaxBadItems   = 16
	DefaultMaxConcurrent = 64
	DefaultReadTimeout   = 30 * time.Second
	DefaultWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout   = 120 * time.Second
)

// Options configure the receiver. Zero fields take the defaults.
type Options struct {
	// Listen is the address to serve on, e.g. ":8443". Required.
	Listen string
	// TLS: Cert and Key serve HTTPS (required unless Insecure); ClientCA
	// also requires client certificates signed by it.
	TLS tlsconfig.Files
	// BearerTokenFile, when set, requires "Authorization: Bearer <token>".
	BearerTokenFile string
	// Insecure allows plain HTTP without TLS, and no authentication (a
	// trusted network only).
	Insecure bool
	// MaxBodyBytes bounds a body, on the wire and decompressed
	// (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxEvents bounds the items of one EventList (DefaultMaxEvents).
	MaxEvents int
	// MaxBadItems is how many items of one EventList that are not audit
	// events are dead-lettered one by one; a list with more is refused
	// (DefaultMaxBadItems).
	MaxBadItems int
	// MaxJSONDepth bounds the nesting of one event, counted from the item
	// (audit.MaxDepth); deeper is dead-lettered.
	MaxJSONDepth int
	// MaxConcurrent bounds the requests handled at once; more are answered
	// 429 (DefaultMaxConcurrent).
	MaxConcurrent int
	// Timeouts of the HTTP server.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Metrics receive what only the receiver knows: its answers by status
	// and the limits reached. Events stored and dead letters are counted
	// by whoever wraps the Publisher. Nil: metrics of its own, registered
	// nowhere.
	Metrics *metrics.Metrics
}

// Timing of the receiver that is not configurable.
const (
	// maxPublishTime bounds how long a request waits for JetStream before
	// it is answered 503, so that the apiserver retries instead of timing
	// out on its side.
	maxPublishTime = 10 * time.Second
	// shutdownTimeout is how long Run waits for requests in flight when
	// stopping.
	shutdownTimeout = 10 * time.Second
	// retryAfter is the Retry-After, in seconds, of a 429.
	retryAfter = "1"
)

// Server is the webhook receiver.
type Server struct {
	cfg          Options
	log          *slog.Logger
	ln           net.Listener
	tls          *tls.Config // nil without TLS; per connection from creds
	creds        *credentials
	sem          chan struct{}
	publishLimit time.Duration
	metrics      *metrics.Metrics
}

// New checks o, loads the certificates and token, and starts listening, so
// that Addr is known before Run.
func New(o Options, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: o, log: logger.With("source", "webhook"), metrics: o.Metrics}
	if s.metrics == nil {
		s.metrics = metrics.New(nil)
	}
	c := &s.cfg
	if c.Listen == "" {
		return nil, errors.New("webhook: listen is required (e.g. \":8443\")")
	}
	if c.MaxBodyBytes < 0 || c.MaxEvents < 0 || c.MaxBadItems < 0 || c.MaxJSONDepth < 0 || c.MaxConcurrent < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 {
		return nil, errors.New("webhook: max_body_bytes, max_events, max_bad_items, max_concurrent and timeouts must not be negative")
	}
	c.MaxBodyBytes = orDefault(c.MaxBodyBytes, DefaultMaxBodyBytes)
	c.MaxEvents = orDefault(c.MaxEvents, DefaultMaxEvents)
	c.MaxBadItems = orDefault(c.MaxBadItems, DefaultMaxBadItems)
	c.MaxJSONDepth = orDefault(c.MaxJSONDepth, audit.MaxDepth)
	c.MaxConcurrent = orDefault(c.MaxConcurrent, DefaultMaxConcurrent)
	c.ReadTimeout = orDefault(c.ReadTimeout, DefaultReadTimeout)
	c.WriteTimeout = orDefault(c.WriteTimeout, DefaultWriteTimeout)
	c.IdleTimeout = orDefault(c.IdleTimeout, DefaultIdleTimeout)
	// Leave time to write the 503 before the write deadline.
	s.publishLimit = min(maxPublishTime, c.WriteTimeout/2)
	s.sem = make(chan struct{}, c.MaxConcurrent)

	hasTLS := c.TLS.Cert != "" || c.TLS.Key != ""
	switch {
	case !hasTLS && !c.Insecure:
		return nil, errors.New("webhook: tls.cert and tls.key are required (or insecure: true for plain HTTP on a trusted network)")
	case !hasTLS && c.TLS.ClientCA != "":
		return nil, errors.New("webhook: tls.client_ca needs tls.cert and tls.key: client certificates only exist with TLS")
	}
	creds, err := newCredentials(c.TLS, c.BearerTokenFile, s.log)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	s.creds = creds
	if hasTLS {
		// The connection's config comes from creds, so that renewed
		// certificates apply to new connections.
		s.tls = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				tc, _ := s.creds.current()
				return tc, nil
			},
		}
	}
	_, token := creds.current()
	if !c.Insecure && c.TLS.ClientCA == "" && token == nil {
		return nil, errors.New("webhook: no authentication configured: set tls.client_ca (client certificates) or bearer_token_file (or insecure: true to accept anyone on a trusted network)")
	}

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("webhook: listen on %s: %w", c.Listen, err)
	}
	s.ln = ln
	if s.tls == nil {
		s.log.Warn("webhook receiver serves plain HTTP (insecure: true): audit events and any token travel unencrypted; use only on a trusted network", "addr", ln.Addr().String())
	}
	if token == nil && c.TLS.ClientCA == "" {
		s.log.Warn("webhook receiver accepts events from any client: no client_ca or bearer_token_file configured", "addr", ln.Addr().String())
	}
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Addr is the address the receiver listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the listener of a Server that will not Run; Run closes it
// itself.
func (s *Server) Close() error { return s.ln.Close() }

// Run serves until ctx is done, then stops accepting, lets requests in
// flight finish (up to a bound) and returns nil. It is called once.
func (s *Server) Run(ctx context.Context, pub ingest.Publisher) error {
	srv := &http.Server{
		Handler:           s.handler(pub),
		TLSConfig:         s.tls,
		ReadTimeout:       s.cfg.ReadTimeout,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.tls != nil {
			err = srv.ServeTLS(s.ln, "", "")
		} else {
			err = srv.Serve(s.ln)
		}
		errc <- err
	}()
	s.log.Info("webhook receiver listening", "addr", s.ln.Addr().String(), "tls", s.tls != nil,
		"client_certificates", s.cfg.TLS.ClientCA != "", "bearer_token", s.cfg.BearerTokenFile != "")
	select {
	case err := <-errc:
		return fmt.Errorf("webhook: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Requests still running past the bound are cut off; the
		// apiserver retries them.
		_ = srv.Close()
	}
	if serveErr := <-errc; err == nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("webhook: shutdown: %w", err)
	}
	return nil
}
