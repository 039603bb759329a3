// Package natstest starts real NATS servers with JetStream for tests: one
// embedded server, or a cluster of them. It must only be imported by tests.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const startTimeout = 10 * time.Second

// RunServer starts a NATS server with JetStream on a random port, storing
// under a fresh temporary folder, and shuts it down when the test ends.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWith(t, &server.Options{StoreDir: t.TempDir()})
}

// RunServerWith starts a server from opts, filling in what a test server
// needs (loopback host, random port, JetStream, no signal handlers).
func RunServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.JetStream = true
	opts.NoSigs = true
	opts.NoLog = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(startTimeout) {
		s.Shutdown()
		t.Fatalf("natstest: server not ready within %s", startTimeout)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// RunCluster starts n servers forming one JetStream cluster and waits until
// it has a meta leader.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			StoreDir:   t.TempDir(),
			Cluster: server.ClusterOpts{
				Name: "vigil-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(joinComma(routes)),
		}
		servers[i] = RunServerWith(t, opts)
	}
	WaitForMetaLeader(t, servers)
	return servers
}

// WaitForMetaLeader waits until JetStream in servers has elected a leader.
func WaitForMetaLeader(t testing.TB, servers []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s.Running() && s.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("natstest: no JetStream meta leader within 30s")
}

// URLs returns the client URLs of servers, joined for nats.Connect.
func URLs(servers ...*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return joinComma(urls)
}

// Connect opens a client connection to url (comma-separated for a cluster)
// and returns it with a JetStream handle; both close when the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}
