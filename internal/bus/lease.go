package bus

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/backoff"
)

// LeaseTTL is how long a lease outlives its holder's last renewal: the
// age limit of BucketLeases. A replica that dies is replaced after at most
// this long; one that stops gives its lease up at once.
const LeaseTTL = 15 * time.Second

// leaseBackoff paces the retries of a lease request that failed (NATS
// unreachable, no quorum), not the wait for a lease another replica holds.
var leaseBackoff = backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: true}

// releaseTimeout bounds giving a lease up on the way out.
const releaseTimeout = 5 * time.Second

// Lease is one key of a key-value bucket whose messages expire (a TTL):
// the replica that created the key holds the lease while it keeps
// updating it, and another creates it once it is deleted (its holder
// stopped) or expired (its holder died or lost NATS). Every update is a
// compare-and-set on the revision the holder last wrote, so a holder that
// was replaced learns it on its next renewal.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	log    *slog.Logger
}

// NewLease is the lease key of kv, taken in the name of holder (shown to
// whoever reads the bucket). ttl is the bucket's: renewals happen three
// times within it.
func NewLease(kv jetstream.KeyValue, key, holder string, ttl time.Duration, logger *slog.Logger) *Lease {
	if logger == nil {
		logger = slog.Default()
	}
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, log: logger.With("lease", key, "holder", holder)}
}

// Hold waits until this replica holds the lease, then returns a context
// that ends when the lease is lost (or ctx ends), and release, which
// gives the lease up and must be called once. It returns an error only
// when ctx ends first.
func (l *Lease) Hold(ctx context.Context) (context.Context, func(), error) {
	rev, err := l.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	l.log.Info("lease acquired")
	held, lose := context.WithCancel(ctx)
	stop := make(chan struct{})
	done := make(chan uint64, 1)
	go func() {
		defer lose()
		done <- l.renew(held, stop, rev)
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			// Deleting only the revision this replica wrote cannot remove
			// a lease another replica took meanwhile.
			if r := <-done; r != 0 {
				dctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
				if err := l.kv.Delete(dctx, l.key, jetstream.LastRevision(r)); err != nil {
					l.log.Warn("lease not released; another replica takes it when it expires", "err", err, "within", l.ttl)
				} else {
					l.log.Info("lease released")
				}
				cancel()
			}
			lose()
		})
	}
	return held, release, nil
}

// acquire creates the lease key, waiting while another replica holds it.
// A watch on the key wakes it when the holder releases it; a ticker
// covers the expiry of a holder that died, which deletes nothing.
func (l *Lease) acquire(ctx context.Context) (uint64, error) {
	poll := time.NewTicker(l.ttl / 3)
	defer poll.Stop()
	var updates <-chan jetstream.KeyValueEntry
	if w, err := l.kv.Watch(ctx, l.key, jetstream.UpdatesOnly()); err == nil {
		defer func() { _ = w.Stop() }()
		updates = w.Updates()
	}
	failures := leaseBackoff.Sequence()
	announced := false
	for {
		rev, err := l.kv.Create(ctx, l.key, []byte(l.holder))
		switch {
		case err == nil:
			return rev, nil
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, jetstream.ErrKeyExists):
			failures.Reset()
			if !announced {
				announced = true
				l.log.Info("lease held by another replica; waiting for it", "held_by", l.holderOf(ctx))
			}
			if err := l.waitFree(ctx, poll.C, updates); err != nil {
				return 0, err
			}
		default:
			wait := failures.Next()
			l.log.Warn("lease request failed; retrying", "err", err, "retry_in", wait)
			if err := backoff.Wait(ctx, wait); err != nil {
				return 0, err
			}
		}
	}
}

// waitFree waits until the lease may be free: the key was deleted (its
// holder released it), or a poll is due (it may have expired).
func (l *Lease) waitFree(ctx context.Context, poll <-chan time.Time, updates <-chan jetstream.KeyValueEntry) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll:
			return nil
		case e, ok := <-updates:
			if !ok {
				// The watch ended: polling still finds the lease free.
				updates = nil
				continue
			}
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				return nil
			}
		}
	}
}

// holderOf names the replica that holds the lease now, for the log.
func (l *Lease) holderOf(ctx context.Context) string {
	e, err := l.kv.Get(ctx, l.key)
	if err != nil {
		return "unknown"
	}
	return string(e.Value())
}

// renew updates the lease every third of its TTL until stop is closed, and
// returns the last revision this replica wrote, or 0 once the lease is
// lost: another replica took it, or no renewal succeeded for a whole TTL,
// after which another may have.
func (l *Lease) renew(ctx context.Context, stop <-chan struct{}, rev uint64) uint64 {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-stop:
			return rev
		case <-ctx.Done():
			return rev
		case <-t.C:
		}
		// Each attempt must answer before the lease could have expired.
		actx, cancel := context.WithTimeout(ctx, l.ttl/3)
		r, err := l.kv.Update(actx, l.key, []byte(l.holder), rev)
		cancel()
		switch {
		case err == nil:
			rev, renewed = r, time.Now()
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
			l.log.Warn("lease lost: another replica holds it", "err", err)
			return 0
		case time.Since(renewed) >= l.ttl:
			l.log.Warn("lease lost: not renewed within its TTL", "err", err, "ttl", l.ttl)
			return 0
		default:
			l.log.Warn("lease renewal failed; retrying", "err", err)
		}
	}
}
