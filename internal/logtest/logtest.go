// Package logtest holds what tests need to read the logs and output of
// code running in other goroutines.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer that tests may read (String) while other
// goroutines write to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
