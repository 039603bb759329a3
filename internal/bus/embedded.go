package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/internal/backoff"
)

const (
	embeddedStartTimeout = 30 * time.Second
	// embeddedCheckInterval is how often the store's health is checked.
	embeddedCheckInterval = time.Second
	// A restart after which the store fails again within
	// embeddedStableAfter did not help: the next one waits longer (see
	// embeddedHold).
	embeddedStableAfter = time.Minute
	// embeddedProbeBytes is how much must be writable in the store's
	// folder before the server is restarted on it: a restart on a disk
	// still full would fail the same way at once.
	embeddedProbeBytes = 1 << 20
)

var (
	// embeddedRecover paces the attempts to bring a failed store back.
	embeddedRecover = backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}
	// embeddedHold is the wait before restarting again a store that failed
	// soon after its last restart: a failing disk rather than a full one.
	embeddedHold = backoff.Policy{Initial: 5 * time.Second, Max: time.Minute}
)

// Embedded is a NATS server with JetStream running inside the process.
//
// It watches its store. A JetStream stream whose write failed — data_dir
// full, or a disk error — refuses every later write, without answering the
// publisher, until the stream is loaded again: nats-server keeps the write
// error for good (see fileStore.setWriteErr). So when a stream reports a
// write error, Embedded waits until data_dir can be written again and then
// restarts the server on the same store. Nothing acknowledged is lost (a
// message is acknowledged only once written), publishers waiting for
// acknowledgements get a disconnection error and retry, and clients
// reconnect to the new server by themselves.
type Embedded struct {
	dataDir  string
	listen   string
	storeDir string
	logger   *slog.Logger
	// security is what clients must present (WithListenSecurity); nil: nothing.
	security *listenSecurity

	mu  sync.Mutex
	srv *server.Server // nil while restarting

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// StartEmbedded starts a JetStream server storing under dataDir/jetstream.
// With listen empty it accepts only in-process connections; otherwise it
// also serves clients on listen ("host:port"), so that other vigil
// processes can join it. Shutdown stops it.
func StartEmbedded(dataDir, listen string, logger *slog.Logger, opts ...EmbeddedOption) (*Embedded, error) {
	e := &Embedded{
		dataDir:  dataDir,
		listen:   listen,
		storeDir: filepath.Join(dataDir, "jetstream"),
		logger:   logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, o := range opts {
		o(e)
	}
	srv, err := e.start(embeddedStartTimeout)
	if err != nil {
		return nil, err
	}
	e.srv = srv
	logger.Info("embedded NATS started", "store", e.storeDir, "listen", listen)
	go e.watch()
	return e, nil
}

// start starts a server on the store.
func (e *Embedded) start(timeout time.Duration) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "vigil-embedded",
		JetStream:  true,
		StoreDir:   e.storeDir,
		NoSigs:     true,
		NoLog:      true, // its logger is set below
		DontListen: e.listen == "",
	}
	if e.listen != "" {
		host, port, err := net.SplitHostPort(e.listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen %q: %w", e.listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats.listen %q: bad port: %w", e.listen, err)
		}
		opts.Host, opts.Port = host, p
	}
	e.security.apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	// The server's warnings and errors (a store that cannot be written
	// names the file and the errno) go to vigil's log.
	srv.SetLoggerV2(&serverLogger{log: e.logger.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded NATS: not ready within " + timeout.String() + " (is data_dir writable and not used by another vigil?)")
	}
	return srv, nil
}

func (e *Embedded) current() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// InProcessConn connects to the running server; it lets nats.go reconnect
// in-process connections to a restarted server.
func (e *Embedded) InProcessConn() (net.Conn, error) {
	srv := e.current()
	if srv == nil {
		return nil, errors.New("embedded NATS is restarting")
	}
	return srv.InProcessConn()
}

// ConnectOptions are the options for an in-process client connection. It
// reconnects for as long as it takes, as when the server restarts.
func (e *Embedded) ConnectOptions() []nats.Option {
	return append(e.security.clientOptions(), []nats.Option{
		nats.InProcessServer(e),
		AsyncErrors(e.logger),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				e.logger.Warn("embedded NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { e.logger.Info("embedded NATS reconnected") }),
	}...)
}

// ClientURL is the URL other processes can connect to ("" when not listening).
func (e *Embedded) ClientURL() string {
	srv := e.current()
	if srv == nil || srv.Addr() == nil {
		return ""
	}
	return srv.ClientURL()
}

// Shutdown stops watching, then stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.once.Do(func() { close(e.stop) })
	<-e.done
	if srv := e.current(); srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// watch checks the store until Shutdown, and brings it back when it failed.
func (e *Embedded) watch() {
	defer close(e.done)
	tick := time.NewTicker(embeddedCheckInterval)
	defer tick.Stop()
	var restarted time.Time
	hold := embeddedHold.Sequence() // restarts that did not last
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		fault := storeFault(e.current())
		if fault == nil {
			continue
		}
		e.logger.Error("embedded JetStream cannot write to data_dir; events are refused until it can (free space in data_dir), then it restarts by itself",
			"data_dir", e.dataDir, "err", fault)
		// A fault that comes back soon after a restart (a failing disk
		// rather than a full one) is not fixed by restarting at once.
		wait := time.Duration(0)
		if !restarted.IsZero() && time.Since(restarted) < embeddedStableAfter {
			wait = hold.Next()
		} else {
			hold.Reset()
		}
		if !e.recover(wait) {
			return
		}
		restarted = time.Now()
	}
}

// storeFault reports a JetStream store that can no longer be written:
// JetStream disabled by the server itself, or a stream with a write error.
func storeFault(srv *server.Server) error {
	if srv == nil {
		return errors.New("embedded NATS not running")
	}
	if !srv.JetStreamEnabled() {
		return errors.New("JetStream was disabled by the server")
	}
	h := srv.Healthz(&server.HealthzOptions{Details: true})
	for _, he := range h.Errors {
		if he.Type == server.HealthzErrorStream && strings.Contains(he.Error, "write error") {
			return errors.New(he.Error)
		}
	}
	return nil
}

// recover waits hold, then until the store's folder can be written, then
// restarts the server, retrying with backoff until it succeeds or Shutdown
// is called (then it reports false).
func (e *Embedded) recover(hold time.Duration) bool {
	if hold > 0 {
		e.logger.Warn("store failed again soon after a restart; waiting before the next", "data_dir", e.dataDir, "wait", hold)
		select {
		case <-e.stop:
			return false
		case <-time.After(hold):
		}
	}
	waits := embeddedRecover.Sequence()
	for attempt := 1; ; attempt++ {
		err := probeWritable(e.storeDir, embeddedProbeBytes)
		restartFailed := false
		if err == nil {
			if err = e.restart(); err == nil {
				e.logger.Info("embedded NATS restarted: JetStream can write to data_dir again", "data_dir", e.dataDir, "attempts", attempt)
				return true
			}
			restartFailed = true
		}
		wait := waits.Next()
		if restartFailed {
			e.logger.Error("restarting embedded NATS failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		} else {
			e.logger.Warn("data_dir still cannot be written; waiting", "data_dir", e.dataDir, "attempt", attempt, "retry_in", wait, "err", err)
		}
		select {
		case <-e.stop:
			return false
		case <-time.After(wait):
		}
	}
}

// restart replaces the server by a new one on the same store.
func (e *Embedded) restart() error {
	e.mu.Lock()
	old := e.srv
	e.srv = nil
	e.mu.Unlock()
	if old != nil {
		old.Shutdown()
		old.WaitForShutdown()
	}
	srv, err := e.start(embeddedStartTimeout)
	if err != nil {
		return err
	}
	if err := storeFault(srv); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("store still failing after restart: %w", err)
	}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	return nil
}

// probeWritable writes and syncs n bytes in dir, then removes them.
func probeWritable(dir string, n int) (err error) {
	f, err := os.CreateTemp(dir, ".vigil-space-probe-*")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.Remove(f.Name()); err == nil && rerr != nil {
			err = rerr
		}
	}()
	if _, err := f.Write(make([]byte, n)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serverLogger passes nats-server's warnings and errors to slog; its
// notices are debug output for vigil.
type serverLogger struct{ log *slog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }

// Fatalf must not exit: the server stops itself after a fatal error, and
// vigil reports that it did not become ready.
func (l *serverLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(string, ...any)          {}
func (l *serverLogger) Tracef(string, ...any)          {}
