package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const embeddedStartTimeout = 30 * time.Second

// Embedded is a NATS server with JetStream running inside the process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream server storing under dataDir/jetstream.
// With listen empty it accepts only in-process connections; otherwise it
// also serves clients on listen ("host:port"), so that other vigil
// processes can join it.
func StartEmbedded(dataDir, listen string, logger *slog.Logger) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "vigil-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		NoSigs:     true,
		NoLog:      true,
		DontListen: listen == "",
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats.listen %q: bad port: %w", listen, err)
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(embeddedStartTimeout) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS: not ready within " + embeddedStartTimeout.String() + " (is data_dir writable and not used by another vigil?)")
	}
	logger.Info("embedded NATS started", "store", opts.StoreDir, "listen", listen)
	return &Embedded{srv: srv}, nil
}

// ConnectOptions are the options for an in-process client connection.
func (e *Embedded) ConnectOptions() []nats.Option {
	return []nats.Option{nats.InProcessServer(e.srv)}
}

// ClientURL is the URL other processes can connect to ("" when not listening).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
