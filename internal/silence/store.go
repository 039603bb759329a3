package silence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/bus"
)

// Keys of the vigil_silences bucket:
//
//	silence.<id>                 the silence
//	silenced.<id>.<alert hash>   an alert it kept from a destination
//	alert.<alert hash>           the first silencing of an alert, which
//	                             counts it in vigil_alerts_silenced_total
//
// Alert ids are free text (a rule id and an auditID), so they are hashed
// into keys of fixed length and alphabet.
const (
	keySilence  = "silence."
	keySilenced = "silenced."
	keyAlert    = "alert."
)

// ErrNotFound is a silence id that is not in the bucket: never added, or
// ended longer ago than the bucket keeps it.
var ErrNotFound = errors.New("no such silence")

// maxExpireAttempts bounds the retries of an expiry that raced another
// change of the same silence.
const maxExpireAttempts = 5

// Store reads and writes silences and their records in the bucket.
type Store struct {
	kv jetstream.KeyValue
}

// Open opens the bucket, which every vigil process creates at start-up
// (bus.EnsureStreams).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, bus.BucketSilences)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("key-value bucket %s not found: is a vigil of this version running against this NATS?", bus.BucketSilences)
		}
		return nil, fmt.Errorf("key-value bucket %s: %w", bus.BucketSilences, err)
	}
	return &Store{kv: kv}, nil
}

// Add stores a new silence.
func (s *Store) Add(ctx context.Context, sil *Silence) error {
	b, err := json.Marshal(sil)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, keySilence+sil.ID, b); err != nil {
		return fmt.Errorf("storing silence %s: %w", sil.ID, err)
	}
	return nil
}

// Get returns the silence id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Silence, error) {
	sil, _, err := s.get(ctx, id)
	return sil, err
}

func (s *Store) get(ctx context.Context, id string) (*Silence, uint64, error) {
	if !ValidID(id) {
		return nil, 0, fmt.Errorf("%q is not a silence id (%d hex digits, as `vigil silence list` shows them)", id, 2*idBytes)
	}
	e, err := s.kv.Get(ctx, keySilence+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("silence %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("silence %s: %w", id, err)
	}
	sil, err := decodeSilence(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("silence %s: %w", id, err)
	}
	return sil, e.Revision(), nil
}

func decodeSilence(b []byte) (*Silence, error) {
	sil := new(Silence)
	if err := json.Unmarshal(b, sil); err != nil {
		return nil, fmt.Errorf("undecodable silence: %w", err)
	}
	if sil.ID == "" {
		return nil, errors.New("undecodable silence: no id")
	}
	return sil, nil
}

// List returns every silence the bucket holds, oldest first.
func (s *Store) List(ctx context.Context) ([]*Silence, error) {
	var out []*Silence
	err := s.scan(ctx, keySilence+"*", func(e jetstream.KeyValueEntry) error {
		sil, err := decodeSilence(e.Value())
		if err != nil {
			return fmt.Errorf("%s: %w", e.Key(), err)
		}
		out = append(out, sil)
		return nil
	})
	slices.SortFunc(out, func(a, b *Silence) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// Expire ends silence id at now. Expiring a silence that has already ended
// is an error that says when it ended.
func (s *Store) Expire(ctx context.Context, id string, now time.Time) (*Silence, error) {
	for range maxExpireAttempts {
		sil, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if !now.Before(sil.End()) {
			return sil, fmt.Errorf("silence %s already ended at %s", id, sil.End().Format(time.RFC3339))
		}
		at := now.UTC().Truncate(time.Millisecond)
		sil.ExpiredAt = &at
		b, err := json.Marshal(sil)
		if err != nil {
			return nil, err
		}
		_, err = s.kv.Update(ctx, keySilence+id, b, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // changed since read: read it again
		}
		if err != nil {
			return nil, fmt.Errorf("expiring silence %s: %w", id, err)
		}
		return sil, nil
	}
	return nil, fmt.Errorf("expiring silence %s: it kept changing while being expired", id)
}

// Record is an alert a silence kept from a destination.
type Record struct {
	Silence string    `json:"silence"`
	Alert   string    `json:"alert"`
	Rule    string    `json:"rule"`
	Dest    string    `json:"destination"`
	At      time.Time `json:"at"`
}

// Record stores r and reports whether it is the alert's first silencing
// anywhere — by any silence, for any destination, on any notifier — which
// is the one that counts it. A record already there is kept as it is: the
// first destination to silence an alert is the one it names.
func (s *Store) Record(ctx context.Context, r Record) (first bool, err error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	h := alertHash(r.Alert)
	if _, err := s.kv.Create(ctx, keySilenced+r.Silence+"."+h, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("recording the silencing of %s: %w", r.Alert, err)
	}
	// Written second, so that an alert counted always has its record.
	_, err = s.kv.Create(ctx, keyAlert+h, []byte(r.Silence))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("recording the silencing of %s: %w", r.Alert, err)
}

// Records returns what silence id silenced, oldest first.
func (s *Store) Records(ctx context.Context, id string) ([]Record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%q is not a silence id", id)
	}
	var out []Record
	err := s.scan(ctx, keySilenced+id+".*", func(e jetstream.KeyValueEntry) error {
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return fmt.Errorf("%s: undecodable record: %w", e.Key(), err)
		}
		out = append(out, r)
		return nil
	})
	slices.SortFunc(out, func(a, b Record) int { return a.At.Compare(b.At) })
	return out, err
}

// scan calls f with the current value of every key matching filter.
func (s *Store) scan(ctx context.Context, filter string, f func(jetstream.KeyValueEntry) error) error {
	w, err := s.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("reading %s: %w", bus.BucketSilences, err)
	}
	// Stopping only unsubscribes; an error leaves nothing to undo.
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reading %s: the watch ended early", bus.BucketSilences)
			}
			if e == nil { // every current value has been sent
				return nil
			}
			if err := f(e); err != nil {
				return err
			}
		}
	}
}

func alertHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}
