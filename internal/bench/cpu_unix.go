//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) the process has used. On a
// machine shared with other work, CPU time per event is the figure that
// does not depend on how much of the machine the bench got.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// syncDisks writes dirty pages back now, so that the kernel does not do it
// in the middle of a timed phase.
func syncDisks() { syscall.Sync() }
