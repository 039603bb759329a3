package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

// leaseTTL is short so that the expiry of a dead holder is quick to see.
const leaseTTL = time.Second

// leaseOn is the lease of holder over a connection of its own, which the
// test may close to kill the holder.
func leaseOn(t *testing.T, url, holder string) (*bus.Lease, *nats.Conn) {
	t.Helper()
	nc, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leases", TTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	return bus.NewLease(kv, "eks.eu-west-1.abc", holder, leaseTTL, nil), nc
}

type holding struct {
	ctx     context.Context
	release func()
}

// hold takes the lease in the background; the channel yields once held.
func hold(ctx context.Context, l *bus.Lease) <-chan holding {
	ch := make(chan holding, 1)
	go func() {
		held, release, err := l.Hold(ctx)
		if err != nil {
			close(ch)
			return
		}
		ch <- holding{held, release}
	}()
	return ch
}

func held(t *testing.T, ch <-chan holding, who string) holding {
	t.Helper()
	select {
	case h, ok := <-ch:
		if !ok {
			t.Fatalf("%s: Hold gave up", who)
		}
		return h
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not get the lease", who)
	}
	return holding{}
}

// TestLeaseOneHolderAndTakeover: of several replicas one holds the lease;
// another takes it when the holder stops (at once: the holder deletes it)
// and when it dies (after the TTL: the key expires), and the dead holder
// learns it lost the lease.
func TestLeaseOneHolderAndTakeover(t *testing.T) {
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, _ := leaseOn(t, srv.ClientURL(), "a")
	ha := held(t, hold(ctx, a), "a")

	b, bConn := leaseOn(t, srv.ClientURL(), "b")
	chB := hold(ctx, b)
	// b waits while a renews, through several TTLs.
	select {
	case <-chB:
		t.Fatal("b got the lease while a held it")
	case <-time.After(3 * leaseTTL):
	}
	if ha.ctx.Err() != nil {
		t.Fatal("a lost a lease it kept renewing")
	}

	// a stops: b takes over without waiting for the TTL.
	ha.release()
	hb := held(t, chB, "b")
	if ha.ctx.Err() == nil {
		t.Error("a's lease context still open after release")
	}

	// b dies: its connection goes, so it neither renews nor releases. c
	// takes over once the key expired, and b's context ends.
	c, _ := leaseOn(t, srv.ClientURL(), "c")
	chC := hold(ctx, c)
	bConn.Close()
	waittest.Until(t, 20*time.Second, "b to notice it lost the lease", func() bool { return hb.ctx.Err() != nil })
	hc := held(t, chC, "c")
	hb.release() // nothing of b's to delete any more
	if hc.ctx.Err() != nil {
		t.Fatal("b's release ended c's lease")
	}
	hc.release()
}
