package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/rules"
)

// stallTimeout ends a pipeline phase that makes no progress: the figures
// would mean nothing, and a stuck run must not hang `make bench`.
const stallTimeout = 30 * time.Second

// sink is the webhook destination alerts are delivered to. It records when
// each alert first arrived and how often.
type sink struct {
	srv *httptest.Server

	mu      sync.Mutex
	first   map[string]time.Time
	auditID map[string]string
	count   map[string]int
	bad     int
	// expected, once set, are the alerts progress counts; got is how many
	// of them have arrived. Kept as alerts arrive, so that polling for
	// progress does not walk every expected alert.
	expected map[string]bool
	got      int
}

func newSink() *sink {
	s := &sink{first: map[string]time.Time{}, auditID: map[string]string{}, count: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var body struct {
		Alerts []alert.Alert `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		s.mu.Lock()
		s.bad++
		s.mu.Unlock()
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range body.Alerts {
		if s.count[a.ID] == 0 {
			s.first[a.ID] = now
			s.auditID[a.ID] = a.AuditID
			if s.expected[a.ID] {
				s.got++
			}
		}
		s.count[a.ID]++
	}
}

// progress counts the expected alerts delivered so far.
func (s *sink) progress() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// expect sets the alerts progress counts, counting those already here.
func (s *sink) expect(expected map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expected, s.got = expected, 0
	for id := range expected {
		if s.count[id] > 0 {
			s.got++
		}
	}
}

// compare counts delivered, missing, unexpected and duplicated alerts.
func (s *sink) compare(expected map[string]bool) (delivered, missing, unexpected, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range expected {
		if s.count[id] == 0 {
			missing++
		}
	}
	for id, n := range s.count {
		delivered++
		if !expected[id] {
			unexpected++
		}
		if n > 1 {
			dups++
		}
	}
	return delivered, missing, unexpected, dups
}

func (s *sink) close() { s.srv.Close() }

// pipelineConfig is `vigil run` tailing logFile and delivering to the sink.
// The destination's rate limit is lifted: the bench measures vigil, not a
// politeness limit meant for a real receiver.
func pipelineConfig(dir, logFile, sinkURL string) (*config.Config, error) {
	cfg, err := config.Parse(filepath.Join(dir, "bench.yaml"), fmt.Appendf(nil, `
cluster: bench
data_dir: %q
ingest:
  files: [{path: %q}]
destinations:
  - {name: sink, type: webhook, url: %q, rate_limit: 1000000}
`, filepath.Join(dir, "data"), logFile, sinkURL))
	if err != nil {
		return nil, fmt.Errorf("bench: pipeline config: %w", err)
	}
	return cfg, nil
}

// pipeline is a running `vigil run`.
type pipeline struct {
	app    *app.App
	cancel context.CancelFunc
	done   chan error
}

func startPipeline(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*pipeline, error) {
	a, err := app.New(cfg, app.RoleAll, logger)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	p := &pipeline{app: a, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- a.Run(rctx) }()
	select {
	case <-a.Ready():
		return p, nil
	case err := <-p.done:
		cancel()
		return nil, fmt.Errorf("bench: pipeline stopped while starting: %w", err)
	case <-ctx.Done():
		cancel()
		if err := <-p.done; err != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		return nil, ctx.Err()
	}
}

// evaluated is how many events the workers have evaluated.
func (p *pipeline) evaluated() int {
	n := 0
	for _, w := range p.app.Workers() {
		n += int(w.Stats().Events.Load())
	}
	return n
}

func (p *pipeline) stop() error {
	p.cancel()
	return <-p.done
}

// expectedAlerts evaluates the file offline: what the pipeline must deliver.
func expectedAlerts(ctx context.Context, set *rules.Set, file string) (map[string]bool, error) {
	exp := map[string]bool{}
	_, err := engine.Replay(ctx, set, []string{file}, engine.ReplayOptions{
		OnAlert: func(a *alert.Alert) error { exp[a.ID] = true; return nil },
	})
	if err != nil {
		return nil, fmt.Errorf("bench: offline evaluation: %w", err)
	}
	return exp, nil
}

func runEndToEnd(ctx context.Context, set *rules.Set, logFile string, n int, dir string, logger *slog.Logger) (*EndToEnd, error) {
	expected, err := expectedAlerts(ctx, set, logFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s := newSink()
	defer s.close()
	s.expect(expected)
	cfg, err := pipelineConfig(dir, logFile, s.srv.URL)
	if err != nil {
		return nil, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0, b0 := ms.Mallocs, ms.TotalAlloc
	start, cpu0 := time.Now(), cpuTime()
	p, err := startPipeline(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	// The file is complete before the pipeline starts, so the time is that
	// of tailing, storing, evaluating and delivering it all.
	var end time.Time
	var cpu time.Duration
	last, lastChange := -1, time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for end.IsZero() {
		select {
		case <-ctx.Done():
			_ = p.stop()
			return nil, ctx.Err()
		case err := <-p.done:
			p.done <- err
			_ = p.stop()
			return nil, fmt.Errorf("bench: pipeline stopped during the end-to-end phase: %w", err)
		case <-tick.C:
		}
		ev, got := p.evaluated(), s.progress()
		if ev >= n && got == len(expected) {
			end, cpu = time.Now(), cpuTime()-cpu0
			continue
		}
		if ev+got != last {
			last, lastChange = ev+got, time.Now()
		} else if time.Since(lastChange) > stallTimeout {
			end, cpu = lastChange, cpuTime()-cpu0
		}
	}
	runtime.ReadMemStats(&ms)
	res := &EndToEnd{Throughput: throughput(n, end.Sub(start), cpu, ms.Mallocs-m0, ms.TotalAlloc-b0), Evaluated: p.evaluated(), ExpectedAlerts: len(expected)}
	if err := p.stop(); err != nil {
		return nil, fmt.Errorf("bench: pipeline: %w", err)
	}
	res.Delivered, res.Missing, res.Unexpected, res.Duplicates = s.compare(expected)
	return res, nil
}

func throughput(n int, d, cpu time.Duration, mallocs, bytes uint64) Throughput {
	t := Throughput{Events: n, Seconds: d.Seconds()}
	if n > 0 && d > 0 {
		t.CPUNsPerEvent = float64(cpu.Nanoseconds()) / float64(n)
		t.EventsPerSec = float64(n) / d.Seconds()
		t.NsPerEvent = float64(d.Nanoseconds()) / float64(n)
		t.AllocsPerEvent = float64(mallocs) / float64(n)
		t.BytesPerEvent = float64(bytes) / float64(n)
	}
	return t
}

// runEngine measures decoding and evaluating with the full pack on one
// core, as a worker does, with events generated outside the timed part.
func runEngine(ctx context.Context, w *Workload, set *rules.Set, n int) (*Throughput, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	ev := engine.NewEvaluator(set, engine.NewMemoryThresholds())
	const batch = 1024
	var arena []byte
	offs := make([]int, 0, batch+1)
	var (
		elapsed, cpu    time.Duration
		mallocs, nbytes uint64
		alerts          int
		ms              runtime.MemStats
	)
	// One Event is decoded into over and over, sharing the batch's memory
	// as a worker shares a message's. Each batch is generated into new
	// memory, as each message is: evaluation may remember a large string
	// by its address (rules' cost trackers do), which only holds for
	// memory that is never written again.
	var e audit.Event
	for from := 0; from < n; from += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		arena, offs = make([]byte, 0, len(arena)+len(arena)/4+1<<20), offs[:0]
		for i := from; i < min(from+batch, n); i++ {
			offs = append(offs, len(arena))
			arena, _ = w.Event(arena, i)
		}
		offs = append(offs, len(arena))
		runtime.ReadMemStats(&ms)
		m0, b0 := ms.Mallocs, ms.TotalAlloc
		t0, c0 := time.Now(), cpuTime()
		for k := 0; k+1 < len(offs); k++ {
			if err := audit.DecodeShared(arena[offs[k]:offs[k+1]], &e); err != nil {
				return nil, fmt.Errorf("bench: event %d does not decode: %w", from+k, err)
			}
			as, err := ev.Evaluate(ctx, &e)
			if err != nil {
				return nil, fmt.Errorf("bench: evaluate event %d: %w", from+k, err)
			}
			alerts += len(as)
		}
		elapsed += time.Since(t0)
		cpu += cpuTime() - c0
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - m0
		nbytes += ms.TotalAlloc - b0
	}
	t := throughput(n, elapsed, cpu, mallocs, nbytes)
	t.Alerts = alerts
	return &t, nil
}
