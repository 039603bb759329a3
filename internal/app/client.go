package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
)

// clientConnectTimeout bounds the connection of a command that asks NATS
// one thing and exits.
const clientConnectTimeout = 5 * time.Second

// Connect connects a short-lived command (`vigil silence`) to the
// deployment's JetStream as the configuration describes it: nats.url with
// its credentials, or the embedded server of `vigil run` on nats.listen
// with the credentials it requires. Unlike the roles it does not wait for
// NATS: an unreachable server is an error at once, naming the address and
// the key it came from.
func Connect(cfg *config.Config, name string, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	url, key, opts, err := clientTarget(cfg.NATS, name, logger)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nats.MaxReconnects(0), nats.Timeout(clientConnectTimeout))
	nc, js, err := bus.Connect(url, opts...)
	if err != nil {
		hint := ""
		if key == "nats.listen" {
			hint = "; is `vigil run` running with this configuration?"
		}
		return nil, nil, fmt.Errorf("%s (%s): %w%s", url, key, err, hint)
	}
	return nc, js, nil
}

// clientTarget is where a command connects, the configuration key that
// says so, and how.
func clientTarget(n config.NATS, name string, logger *slog.Logger) (url, key string, opts []nats.Option, err error) {
	if n.URL != "" {
		creds, err := natsCredentials(n)
		if err != nil {
			return "", "", nil, err
		}
		opts, err := bus.ClientOptions(creds, name, logger)
		return n.URL, "nats.url", opts, err
	}
	if n.Listen == "" {
		return "", "", nil, errors.New("no NATS to connect to: set nats.url to the deployment's NATS, or nats.listen for " +
			"`vigil run`'s embedded server, which serves only its own process without it")
	}
	if n.TLS.Cert != "" {
		return "", "", nil, errors.New("the embedded server serves TLS on nats.listen, and a configuration for it has no CA to " +
			"verify it with: use a configuration with nats.url (tls://host:port) and nats.tls.ca")
	}
	host, port, err := net.SplitHostPort(n.Listen)
	if err != nil {
		return "", "", nil, fmt.Errorf("nats.listen %q: %w", n.Listen, err)
	}
	// A server listening on every address is reached on this machine's.
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	pw, err := natsPassword(n)
	if err != nil {
		return "", "", nil, err
	}
	opts, err = bus.ClientOptions(bus.Credentials{NKeyFile: n.NKeyFile, User: n.User, Password: pw}, name, logger)
	return "nats://" + net.JoinHostPort(host, port), "nats.listen", opts, err
}
