// Package ingest defines what an audit event source is. Sources live in
// sub-packages (file, webhook); they read events and hand them to a
// Publisher, which returns only once JetStream has stored them.
package ingest

import (
	"context"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// Publisher stores events durably. Publish returns nil only after every
// event of the batch is acknowledged by JetStream; on error, some may have
// been stored and the caller must retry the whole batch (MsgIDs make the
// retry harmless).
type Publisher interface {
	Publish(ctx context.Context, batch []audit.Raw) error
	// DeadLetter stores input that is not a valid audit event, with the
	// reason, so that nothing accepted is silently dropped.
	DeadLetter(ctx context.Context, d DeadLetter) error
}

// DeadLetter is input that could not be used as an audit event.
type DeadLetter struct {
	Source string // e.g. "file:/var/log/audit.log:1234" or "webhook:10.0.0.1"
	Reason string
	Data   []byte
}

// Source reads audit events and publishes them until ctx is done.
type Source interface {
	Run(ctx context.Context, pub Publisher) error
}
