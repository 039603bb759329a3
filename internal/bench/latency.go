package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vigil-k8s/vigil/rules"
)

// appendEvery is how often the latency phase appends to the log: often
// enough that a batch is a few milliseconds of traffic, as an apiserver's
// buffered log writer produces.
const appendEvery = 5 * time.Millisecond

// runLatency appends the workload to a log the pipeline tails, at a fixed
// rate, and measures from the write of each event to the arrival of its
// alert at the webhook sink.
func runLatency(ctx context.Context, w *Workload, set *rules.Set, rate int, dur time.Duration, dir string, logger *slog.Logger) (*Latency, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	logFile := filepath.Join(dir, "audit.log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	s := newSink()
	defer s.close()
	cfg, err := pipelineConfig(dir, logFile, s.srv.URL)
	if err != nil {
		return nil, err
	}
	p, err := startPipeline(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop()
		}
	}()

	appended := map[string]time.Time{} // auditID → when its line was written
	var buf []byte
	var ids [][]byte
	written := 0
	tick := time.NewTicker(appendEvery)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < dur {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds()*float64(rate)) - written
		if due <= 0 {
			continue
		}
		buf, ids = buf[:0], ids[:0]
		for i := written; i < written+due; i++ {
			at := len(buf)
			buf, _ = w.Event(buf, i)
			ids = append(ids, auditIDOf(buf[at:]))
			buf = append(buf, '\n')
		}
		if _, err := f.Write(buf); err != nil {
			return nil, fmt.Errorf("bench: append: %w", err)
		}
		now := time.Now()
		for _, id := range ids {
			if _, ok := appended[string(id)]; !ok {
				appended[string(id)] = now
			}
		}
		written += due
	}
	elapsed := time.Since(start)

	expected, err := expectedAlerts(ctx, set, logFile)
	if err != nil {
		return nil, err
	}
	// Whatever is still in flight gets the stall timeout to arrive.
	s.expect(expected)
	deadline := time.Now().Add(stallTimeout)
	for s.progress() < len(expected) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	stopped = true
	if err := p.stop(); err != nil {
		return nil, fmt.Errorf("bench: pipeline: %w", err)
	}

	res := &Latency{Rate: rate, Seconds: elapsed.Seconds(), Events: written, AchievedRate: float64(written) / elapsed.Seconds(), ExpectedAlerts: len(expected)}
	var lat []time.Duration
	s.mu.Lock()
	for id := range expected {
		got, ok := s.first[id]
		if !ok {
			res.Missing++
			continue
		}
		if at, ok := appended[s.auditID[id]]; ok {
			lat = append(lat, got.Sub(at))
		}
	}
	s.mu.Unlock()
	slices.Sort(lat)
	res.Samples = len(lat)
	if len(lat) > 0 {
		res.P50Ms = ms(percentile(lat, 0.50))
		res.P99Ms = ms(percentile(lat, 0.99))
		res.MaxMs = ms(lat[len(lat)-1])
	}
	return res, nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// auditIDOf finds the auditID of an event line the workload wrote.
func auditIDOf(line []byte) []byte {
	const key = `"auditID":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return nil
	}
	v := line[i+len(key):]
	if j := bytes.IndexByte(v, '"'); j >= 0 {
		return v[:j]
	}
	return nil
}
