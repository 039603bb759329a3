// Package waittest polls a condition in tests that wait for something a
// real server, process or file does in its own time.
package waittest

import (
	"testing"
	"time"
)

// Until polls cond every few milliseconds until it holds, and fails the
// test if it does not within timeout; the timeout only bounds a broken
// test, it is not a measure of speed.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
