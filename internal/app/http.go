package app

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// opsServer serves /metrics, /healthz and /readyz, over HTTPS with
// metrics.tls.
type opsServer struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

// readiness reports why the process is not ready, or nil.
type readiness func() error

func newOpsServer(cfg config.Metrics, gatherer prometheus.Gatherer, ready readiness, logger *slog.Logger) (*opsServer, error) {
	metrics := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
	if cfg.TLS.ClientCA != "" && cfg.TLS.Cert == "" {
		return nil, errors.New("metrics.tls.client_ca needs metrics.tls.cert and metrics.tls.key")
	}
	// The certificates and the token are re-read when their files change,
	// as the webhook receiver's are.
	creds, err := tlsconfig.NewReloader(tlsFiles(cfg.TLS), cfg.BearerTokenFile, logger.With("listener", "metrics"), "http/1.1")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if cfg.BearerTokenFile != "" {
		metrics = requireBearer(creds, metrics)
	}
	tlsConfig := creds.TLSConfig()
	if cfg.TLS.ClientCA != "" {
		// A client certificate is verified when one is presented, and
		// required for /metrics only: the kubelet's probes present none.
		tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		tlsConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			tc, _ := creds.Current()
			tc = tc.Clone()
			tc.ClientAuth = tls.VerifyClientCertIfGiven
			return tc, nil
		}
		metrics = requireClientCert(metrics)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %q: %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		TLSConfig:         tlsConfig,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return &opsServer{srv: srv, ln: ln, tls: creds.HasTLS()}, nil
}

// requireBearer lets through only requests carrying the current token,
// compared in constant time so that timing does not reveal it.
func requireBearer(creds *tlsconfig.Reloader, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, token := creds.Current()
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil-metrics"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireClientCert lets through only requests on a connection whose
// client certificate was verified against metrics.tls.client_ca.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "client certificate required", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (o *opsServer) Addr() net.Addr { return o.ln.Addr() }

// run serves until ctx is done.
func (o *opsServer) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		if o.tls {
			errc <- o.srv.ServeTLS(o.ln, "", "")
		} else {
			errc <- o.srv.Serve(o.ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := o.srv.Shutdown(shutCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
