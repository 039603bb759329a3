// Package ingesttest runs an ingest source in the background of a test and
// checks that it stops cleanly.
package ingesttest

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// stopTimeout bounds how long a cancelled source may take to return.
const stopTimeout = 30 * time.Second

// Running is a source started by Start.
type Running struct {
	cancel context.CancelFunc
	done   chan error
}

// Start runs src, publishing to pub, until Stop or the end of the test.
func Start(t testing.TB, src ingest.Source, pub ingest.Publisher) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, pub) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels the source and fails the test unless Run returns nil
// within stopTimeout. Stopping again does nothing.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(stopTimeout):
		t.Fatalf("Run did not return within %v of its context ending", stopTimeout)
	}
}
