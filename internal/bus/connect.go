package bus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// MaxAsyncPending bounds unacknowledged async publishes per connection.
const MaxAsyncPending = 4096

// ClientOptions are the connection options for an external NATS from cfg
// (or another vigil's embedded server on its nats.listen): credentials,
// nkey, user/password, TLS 1.2+, and reconnecting forever (a NATS
// outage must not stop vigil; it waits and resumes).
func ClientOptions(cfg config.NATS, name string, logger *slog.Logger) ([]nats.Option, error) {
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
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.User != "" {
		pw, err := config.Secret("nats password", cfg.PasswordEnv, cfg.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(cfg.User, pw))
	}
	if cfg.TLS.Enabled() {
		tc, err := tlsconfig.Client(cfg.TLS)
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
