package bench

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// peakRSS reads VmHWM, the resident set's high-water mark, in bytes.
func peakRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			kb, err := strconv.ParseUint(string(f[0]), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux: writing 5 to
// clear_refs), so that a phase's peak is its own.
func resetPeakRSS() error {
	f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("5"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && peakRSS() == 0 {
		return errors.New("VmHWM not readable")
	}
	return err
}

// rssTracker measures the peak of each phase when the kernel allows it,
// and the peak of the whole run in any case.
type rssTracker struct {
	perPhase bool
	max      uint64
}

func newRSSTracker(perPhase bool) *rssTracker { return &rssTracker{perPhase: perPhase} }

func (t *rssTracker) start() {
	// What earlier phases left behind is garbage; return it to the OS so
	// that it does not count towards this phase.
	runtime.GC()
	debug.FreeOSMemory()
	if t.perPhase {
		t.max = max(t.max, peakRSS())
		_ = resetPeakRSS()
	}
}

func (t *rssTracker) stop() uint64 {
	p := peakRSS()
	t.max = max(t.max, p)
	return p
}

func (t *rssTracker) overall() uint64 { return max(t.max, peakRSS()) }
