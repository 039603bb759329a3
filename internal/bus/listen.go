package bus

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// embeddedTLSTimeout bounds a client's TLS handshake with the embedded
// server, in seconds.
const embeddedTLSTimeout = 5

// EmbeddedOption configures the embedded server.
type EmbeddedOption func(*Embedded)

// listenSecurity is what clients of the embedded server must present —
// a user and password, or a signature with an nkey — and the TLS it serves
// on nats.listen; vigil's own in-process connections present the same
// credentials (they need no TLS: nats-server does not ask it of them).
type listenSecurity struct {
	users  []*server.User
	nkeys  []*server.NkeyUser
	tls    *tls.Config // nil: plain TCP
	verify bool        // client certificates required
	client []nats.Option
}

// ListenSecurity is what the embedded server requires of its clients.
type ListenSecurity struct {
	// Listen is the address the server also serves other processes on;
	// empty, in-process clients only.
	Listen string
	// User and Password, or the nkey whose seed is in NKeyFile, are what
	// clients must log in with.
	User, Password string
	NKeyFile       string
	// TLS: Cert/Key are the server's identity on Listen, and ClientCA,
	// when set, requires client certificates signed by it.
	TLS tlsconfig.Files
}

// WithListenSecurity makes the embedded server require the credentials of
// c from every client, and serve TLS 1.2+ on c.Listen with c.TLS.Cert/Key,
// requiring client certificates signed by c.TLS.ClientCA when set; the
// certificates are re-read when their files change. It reads the nkey and
// certificates now, so that a bad one stops start-up. It logs a warning
// when c.Listen can be reached from other machines without TLS, or without
// authentication.
func WithListenSecurity(c ListenSecurity, logger *slog.Logger) (EmbeddedOption, error) {
	ls := &listenSecurity{}
	if c.User != "" {
		ls.users = append(ls.users, &server.User{Username: c.User, Password: c.Password})
		ls.client = append(ls.client, nats.UserInfo(c.User, c.Password))
	}
	if c.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		// The option carries the public key the server must accept.
		var o nats.Options
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		ls.nkeys = append(ls.nkeys, &server.NkeyUser{Nkey: o.Nkey})
		ls.client = append(ls.client, opt)
	}
	if c.Listen != "" && c.TLS.Cert != "" {
		r, err := tlsconfig.NewReloader(c.TLS, "", logger.With("listener", "nats"))
		if err != nil {
			return nil, fmt.Errorf("nats.tls: %w", err)
		}
		ls.tls = r.TLSConfig()
		ls.verify = c.TLS.ClientCA != ""
	}
	if c.Listen != "" && !LoopbackOnly(c.Listen) {
		auth := len(ls.users) > 0 || len(ls.nkeys) > 0
		switch {
		case !auth:
			logger.Warn("embedded NATS accepts any client on nats.listen (nats.insecure: true): whoever reaches it can read every audit event and forge or drop alerts; use it on a trusted network only",
				"listen", c.Listen)
		case ls.tls == nil:
			logger.Warn("embedded NATS serves nats.listen without TLS: audit events, and a password if one is used, cross the network unencrypted; set nats.tls.cert and nats.tls.key",
				"listen", c.Listen)
		}
	}
	return func(e *Embedded) { e.security = ls }, nil
}

// LoopbackOnly reports whether a listen address ("host:port") accepts
// connections from this machine only.
func LoopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// apply sets the server's authentication and TLS; nil applies nothing.
func (ls *listenSecurity) apply(opts *server.Options) {
	if ls == nil {
		return
	}
	// Fresh copies for each server: a server assigns accounts to its users,
	// and a restarted one must not see the previous one's.
	for _, u := range ls.users {
		opts.Users = append(opts.Users, &server.User{Username: u.Username, Password: u.Password})
	}
	for _, n := range ls.nkeys {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: n.Nkey})
	}
	if ls.tls != nil {
		opts.TLS = true
		opts.TLSConfig = ls.tls
		opts.TLSVerify = ls.verify
		opts.TLSTimeout = embeddedTLSTimeout
	}
}

// clientOptions are the credentials vigil's in-process connections present.
func (ls *listenSecurity) clientOptions() []nats.Option {
	if ls == nil {
		return nil
	}
	return ls.client
}
