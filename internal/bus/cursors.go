package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursors keeps where polling sources have read to, one value per key, in
// BucketCursors. A source saves its cursor only after JetStream
// acknowledged what it read up to it.
type Cursors struct {
	kv jetstream.KeyValue
}

// NewCursors keeps cursors in kv.
func NewCursors(kv jetstream.KeyValue) *Cursors { return &Cursors{kv: kv} }

// Load returns the cursor saved under key, nil when there is none yet.
func (c *Cursors) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cursor %s: %w", key, err)
	}
	return e.Value(), nil
}

// Save replaces the cursor under key.
func (c *Cursors) Save(ctx context.Context, key string, value []byte) error {
	if _, err := c.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("save cursor %s: %w", key, err)
	}
	return nil
}
