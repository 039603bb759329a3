package bus

import (
	"fmt"
	"log/slog"
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
// (a NATS outage must not stop vigil; it waits and resumes).
func ClientOptions(c Credentials, name string, logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		AsyncErrors(logger),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
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
func Connect(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
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
