package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// MaxAsyncPending bounds unacknowledged async publishes per connection.
const MaxAsyncPending = 4096

// Credentials are what vigil presents to an external NATS, or to another
// vigil's embedded server on its listen address.
type Credentials struct {
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile string
	// NKeyFile holds an nkey seed to sign with.
	NKeyFile string
	// User and Password log in with a password.
	User, Password string
	// TLS: CA verifies the server, Cert/Key are the client identity.
	TLS tlsconfig.Files
}

// ClientOptions are the connection options for an external NATS presenting
// c: credentials, nkey, user/password, TLS 1.2+, and reconnecting forever
// once connected (a NATS outage must not stop vigil; it waits and resumes).
// The first connection is not retried here: nats.go would hide why it
// failed, so the caller retries Connect and reports each failure.
func ClientOptions(c Credentials, name string, logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		AsyncErrors(logger),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("NATS reconnected", "server", nc.ConnectedServerName()) }),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLS.Enabled() {
		tc, err := tlsconfig.Client(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("nats.tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Connect opens a connection and a JetStream handle with bounded async
// publishing: at most MaxAsyncPending unacknowledged, each given up after
// AckTimeout, so that a stream that cannot write (a full disk) fails its
// publishers instead of filling the pending window for good.
//
// A failed connection's error is the dial error ("connection refused"),
// not nats.go's "no servers available for connection", which it
// substitutes for a refused dial.
func Connect(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	var o nats.Options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, nil, fmt.Errorf("connect to NATS: %w", err)
		}
	}
	var dials *dialRecorder
	if o.CustomDialer == nil && o.InProcessServer == nil {
		timeout := o.Timeout
		if timeout == 0 {
			timeout = nats.DefaultTimeout
		}
		dials = &dialRecorder{d: net.Dialer{Timeout: timeout}}
		opts = append(opts, nats.SetCustomDialer(dials))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) && dials != nil {
			if derr := dials.failures(); derr != nil {
				err = derr
			}
		}
		return nil, nil, fmt.Errorf("connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxAsyncPending), jetstream.WithPublishAsyncTimeout(AckTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// AsyncErrors logs what NATS reports outside of any call — above all a
// subscription that could not keep up and lost messages (a slow consumer),
// which otherwise shows only as a stall until redelivery.
func AsyncErrors(logger *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		logger.Warn("NATS asynchronous error", "subject", subject, "err", err)
	})
}

// dialRecorder dials like nats.go's default dialer and keeps the errors,
// so that a failed connection can say why.
type dialRecorder struct {
	d    net.Dialer
	mu   sync.Mutex
	errs []error
}

func (r *dialRecorder) Dial(network, address string) (net.Conn, error) {
	c, err := r.d.Dial(network, address)
	if err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
	return c, err
}

// failures are the dial errors so far, on one line, or nil.
func (r *dialRecorder) failures() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return nil
	}
	return dialErrors(append([]error(nil), r.errs...))
}

// dialErrors joins errors with "; " rather than errors.Join's newlines,
// which a log line would show escaped.
type dialErrors []error

func (e dialErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e dialErrors) Unwrap() []error { return e }

// RedactURL is a NATS URL, or comma-separated list of them, fit for a log:
// a password, or a user alone (which NATS takes as a token), is replaced.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "(unparsable URL with credentials)"
			}
			continue
		}
		if u.User == nil {
			parts[i] = p
			continue
		}
		if _, ok := u.User.Password(); ok {
			parts[i] = u.Redacted()
		} else {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
