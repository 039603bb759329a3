// Command vigil is a streaming rules and alerting engine for Kubernetes
// audit logs.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT says otherwise. Without one, garbage from large audit bodies
// and the embedded JetStream store's buffers let the heap grow to twice
// the live data before a collection; with it, vigil run stays near 200 MiB
// under sustained load (see docs/benchmarks.md). It is soft: the runtime
// collects harder near it, it never fails an allocation.
const defaultMemoryLimit = 192 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// exitCode maps a command's error to the process exit status. Errors that
// carry their own code (a failed lint or test run) have already printed
// what went wrong.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "vigil:", err)
	return 1
}
