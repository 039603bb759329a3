// Package bench is `vigil bench`: a deterministic, realistic workload and
// the measurements of the pipeline on it — the engine alone on one core,
// file to alert end to end, webhook ingest, append-to-delivered latency,
// peak memory, and the same events through jq for comparison.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/rules"
)

// Phases that can be skipped. The engine phase always runs: it is the
// reference the others are read against.
const (
	PhaseEndToEnd = "e2e"
	PhaseWebhook  = "webhook"
	PhaseLatency  = "latency"
	PhaseJQ       = "jq"
)

// Options configures a run. Zero values take the defaults.
type Options struct {
	// Events is the number of events of the throughput phases.
	Events int
	// Seed selects the workload; the same seed gives the same events.
	Seed uint64
	// Rate (events/s) and Duration of the latency phase.
	Rate     int
	Duration time.Duration
	// Skip lists phases not to run (PhaseEndToEnd, ...).
	Skip []string
	// WebhookClients post EventLists of WebhookBatch events concurrently.
	WebhookClients int
	WebhookBatch   int
	// TempDir holds the JetStream stores and log files; "" is the system's.
	TempDir string
	// JQ is the jq binary; "" looks it up on PATH.
	JQ string
	// Logger receives the pipeline's own logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is told which phase starts.
	Progress func(phase string)
}

// Defaults of Options.
const (
	DefaultEvents         = 200_000
	DefaultSeed           = 1
	DefaultRate           = 5_000
	DefaultDuration       = 10 * time.Second
	DefaultWebhookClients = 8
	DefaultWebhookBatch   = 400
)

func (o *Options) setDefaults() {
	if o.Events <= 0 {
		o.Events = DefaultEvents
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.WebhookClients <= 0 {
		o.WebhookClients = DefaultWebhookClients
	}
	if o.WebhookBatch <= 0 {
		o.WebhookBatch = DefaultWebhookBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
}

func (o *Options) skipped(phase string) bool { return slices.Contains(o.Skip, phase) }

// ValidPhase reports whether name is a phase that can be skipped.
func ValidPhase(name string) bool {
	switch name {
	case PhaseEndToEnd, PhaseWebhook, PhaseLatency, PhaseJQ:
		return true
	}
	return false
}

// Run runs every phase not skipped, one after the other, and returns the
// report. A phase that cannot run at all fails the run; a phase that runs
// but falls short (alerts missing, events lost) is reported in its figures
// and in Report.Problems.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.setDefaults()
	for _, s := range opts.Skip {
		if !ValidPhase(s) {
			return nil, fmt.Errorf("bench: unknown phase %q to skip (want %s, %s, %s or %s)", s, PhaseEndToEnd, PhaseWebhook, PhaseLatency, PhaseJQ)
		}
	}
	w, err := NewWorkload(opts.Seed)
	if err != nil {
		return nil, fmt.Errorf("bench: workload: %w", err)
	}
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		return nil, fmt.Errorf("bench: default rules: %w", err)
	}
	dir, err := os.MkdirTemp(opts.TempDir, "vigil-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	attack, large := w.Rates()
	r := &Report{
		Machine: machine(),
		Workload: WorkloadInfo{
			Seed: opts.Seed, Events: opts.Events, CorpusEvents: w.CorpusEvents(),
			AttackShare: attack, LargeShare: large, LargeBodyBytes: [2]int{minBody, maxBody},
			Rules: len(set.Rules()), AttackRules: w.AttackRules(),
		},
		PerPhaseRSS: resetPeakRSS() == nil,
	}
	rss := newRSSTracker(r.PerPhaseRSS)

	opts.Progress("engine")
	rss.start()
	r.Engine, err = runEngine(ctx, w, set, opts.Events)
	if err != nil {
		return nil, err
	}
	r.Engine.PeakRSSBytes = rss.stop()

	logFile := ""
	if !opts.skipped(PhaseEndToEnd) || !opts.skipped(PhaseJQ) {
		logFile = dir + "/audit.log"
		if r.Workload.FileBytes, err = w.WriteFile(logFile, 0, opts.Events); err != nil {
			return nil, fmt.Errorf("bench: write workload: %w", err)
		}
	}
	if !opts.skipped(PhaseEndToEnd) {
		opts.Progress(PhaseEndToEnd)
		rss.start()
		r.EndToEnd, err = runEndToEnd(ctx, set, logFile, opts.Events, dir+"/e2e", opts.Logger)
		if err != nil {
			return nil, err
		}
		r.EndToEnd.PeakRSSBytes = rss.stop()
		dropStore(dir + "/e2e")
		if e := r.EndToEnd; e.Missing > 0 || e.Unexpected > 0 || e.Duplicates > 0 || e.Evaluated != e.Events {
			r.Problems = append(r.Problems, fmt.Sprintf("end to end: %d of %d expected alerts missing, %d unexpected, %d duplicated; %d of %d events evaluated",
				e.Missing, e.ExpectedAlerts, e.Unexpected, e.Duplicates, e.Evaluated, e.Events))
		}
	}
	if !opts.skipped(PhaseWebhook) {
		opts.Progress(PhaseWebhook)
		rss.start()
		r.Webhook, err = runWebhook(ctx, w, opts.Events, opts.WebhookClients, opts.WebhookBatch, true, dir+"/webhook", opts.Logger)
		if err != nil {
			return nil, err
		}
		r.Webhook.PeakRSSBytes = rss.stop()
		dropStore(dir + "/webhook")
		rss.start()
		r.WebhookSingle, err = runWebhook(ctx, w, opts.Events, opts.WebhookClients, opts.WebhookBatch, false, dir+"/webhook-single", opts.Logger)
		if err != nil {
			return nil, err
		}
		r.WebhookSingle.PeakRSSBytes = rss.stop()
		dropStore(dir + "/webhook-single")
		for _, wh := range []*Webhook{r.Webhook, r.WebhookSingle} {
			if wh.Stored != wh.Events {
				r.Problems = append(r.Problems, fmt.Sprintf("webhook: %d of %d events stored", wh.Stored, wh.Events))
			}
		}
	}
	if !opts.skipped(PhaseLatency) {
		opts.Progress(PhaseLatency)
		// The workload's log, written at the start, would otherwise be
		// written back by the kernel 30 s later, in the middle of this
		// phase: a stall of a second that is the harness's, not vigil's.
		syncDisks()
		rss.start()
		r.Latency, err = runLatency(ctx, w, set, opts.Rate, opts.Duration, dir+"/latency", opts.Logger)
		if err != nil {
			return nil, err
		}
		r.Latency.PeakRSSBytes = rss.stop()
		if l := r.Latency; l.Missing > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("latency: %d of %d expected alerts not delivered", l.Missing, l.ExpectedAlerts))
		}
	}
	if !opts.skipped(PhaseJQ) {
		opts.Progress(PhaseJQ)
		r.JQ, err = runJQ(ctx, set, opts.JQ, logFile, opts.Events)
		if err != nil {
			return nil, err
		}
		if j := r.JQ; j.Ran && j.JQMatches != j.VigilMatches {
			r.Problems = append(r.Problems, fmt.Sprintf("jq: its rule matched %d events, vigil's %d: the rules are not equivalent", j.JQMatches, j.VigilMatches))
		}
	}
	r.PeakRSSBytes = rss.overall()
	r.Targets = targets(r)
	return r, nil
}

// Machine describes where figures were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// dropStore removes a finished phase's JetStream store: its pages are
// discarded rather than written back to disk during the next phase.
func dropStore(dir string) { _ = os.RemoveAll(dir) }
