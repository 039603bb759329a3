package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is the result of a run. Phases that were skipped are nil.
type Report struct {
	Machine  Machine      `json:"machine"`
	Workload WorkloadInfo `json:"workload"`

	Engine   *Throughput `json:"engine"`
	EndToEnd *EndToEnd   `json:"endToEnd,omitempty"`
	Webhook  *Webhook    `json:"webhook,omitempty"`
	// WebhookSingle is the webhook phase storing one message per event,
	// as before segments: the figure segments are read against.
	WebhookSingle *Webhook `json:"webhookSingle,omitempty"`
	Latency       *Latency `json:"latency,omitempty"`
	JQ            *JQ      `json:"jq,omitempty"`

	// PeakRSSBytes is the largest resident set of the whole run.
	PeakRSSBytes uint64 `json:"peakRSSBytes"`
	// PerPhaseRSS tells whether each phase's peak was measured on its own
	// (the kernel let the peak be reset) or is the peak so far.
	PerPhaseRSS bool     `json:"perPhaseRSS"`
	Targets     []Target `json:"targets"`
	// Problems are correctness failures seen while measuring: alerts lost
	// or duplicated, events not stored. A report with problems has figures
	// that do not count.
	Problems []string `json:"problems,omitempty"`
}

// WorkloadInfo describes the events measured.
type WorkloadInfo struct {
	Seed         uint64 `json:"seed"`
	Events       int    `json:"events"`
	CorpusEvents int    `json:"corpusEvents"`
	// AttackShare and LargeShare are the fractions of attack events and of
	// RequestResponse events with bodies of LargeBodyBytes.
	AttackShare    float64  `json:"attackShare"`
	LargeShare     float64  `json:"largeShare"`
	LargeBodyBytes [2]int   `json:"largeBodyBytes"`
	FileBytes      int64    `json:"fileBytes,omitempty"`
	Rules          int      `json:"rules"`
	AttackRules    []string `json:"attackRules"`
}

// Throughput is a rate of events through a phase.
type Throughput struct {
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"eventsPerSec"`
	NsPerEvent   float64 `json:"nsPerEvent"`
	// CPUNsPerEvent is the process's CPU time (all threads) per event.
	CPUNsPerEvent  float64 `json:"cpuNsPerEvent"`
	AllocsPerEvent float64 `json:"allocsPerEvent"`
	BytesPerEvent  float64 `json:"allocBytesPerEvent"`
	PeakRSSBytes   uint64  `json:"peakRSSBytes"`
	// Alerts is how many alerts the events raised (engine phase).
	Alerts int `json:"alerts,omitempty"`
}

// EndToEnd is the file → JetStream → engine → ALERTS → webhook phase.
type EndToEnd struct {
	Throughput
	Evaluated      int `json:"evaluated"`
	ExpectedAlerts int `json:"expectedAlerts"`
	Delivered      int `json:"delivered"`
	Missing        int `json:"missing"`
	Unexpected     int `json:"unexpected"`
	Duplicates     int `json:"duplicates"`
}

// Webhook is the EventList POST → JetStream ack phase.
type Webhook struct {
	Throughput
	Clients  int `json:"clients"`
	Batch    int `json:"batch"`
	Requests int `json:"requests"`
	// Failed requests were not answered 200 (the first error is logged).
	Failed int `json:"failed"`
	// Stored is the events AUDIT holds afterwards, Messages the messages
	// they are in: fewer with segments.
	Stored   int  `json:"stored"`
	Messages int  `json:"messages"`
	Segments bool `json:"segments"`
}

// Latency is append → delivered at a fixed rate.
type Latency struct {
	Rate           int     `json:"rate"`
	Seconds        float64 `json:"seconds"`
	Events         int     `json:"events"`
	AchievedRate   float64 `json:"achievedRate"`
	ExpectedAlerts int     `json:"expectedAlerts"`
	Samples        int     `json:"samples"`
	Missing        int     `json:"missing"`
	P50Ms          float64 `json:"p50Ms"`
	P99Ms          float64 `json:"p99Ms"`
	MaxMs          float64 `json:"maxMs"`
	PeakRSSBytes   uint64  `json:"peakRSSBytes"`
}

// JQ compares vigil's full pack with one rule in jq over the same file.
type JQ struct {
	Ran    bool   `json:"ran"`
	Reason string `json:"reason,omitempty"` // why it did not run
	Rule   string `json:"rule"`
	Filter string `json:"filter,omitempty"`
	// JQ is jq's rate with one rule, Vigil the offline replay's with the
	// full pack on one core, over the same file.
	JQ    Throughput `json:"jq"`
	Vigil Throughput `json:"vigil"`
	Ratio float64    `json:"ratio"`
	// CPURatio compares CPU time per event instead of wall time.
	CPURatio     float64 `json:"cpuRatio"`
	JQMatches    int     `json:"jqMatches"`
	VigilMatches int     `json:"vigilMatches"`
}

// Target is one line of the performance targets.
type Target struct {
	Figure   string `json:"figure"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	// Met is nil when the figure was not measured.
	Met *bool `json:"met"`
}

const mib = 1 << 20

func targets(r *Report) []Target {
	var out []Target
	add := func(figure, target string, measured string, met *bool) {
		out = append(out, Target{Figure: figure, Target: target, Measured: measured, Met: met})
	}
	is := func(b bool) *bool { return &b }
	add("engine only, 1 core, full pack", "≥ 300,000 events/s", rate(r.Engine.EventsPerSec), is(r.Engine.EventsPerSec >= 300_000))
	if e := r.EndToEnd; e != nil {
		add("end to end, embedded JetStream, file storage", "≥ 50,000 events/s", rate(e.EventsPerSec), is(e.EventsPerSec >= 50_000 && e.Missing == 0))
	} else {
		add("end to end, embedded JetStream, file storage", "≥ 50,000 events/s", "skipped", nil)
	}
	if wh := r.Webhook; wh != nil {
		add("webhook ingest", "≥ 50,000 events/s", rate(wh.EventsPerSec), is(wh.EventsPerSec >= 50_000 && wh.Stored == wh.Events))
	} else {
		add("webhook ingest", "≥ 50,000 events/s", "skipped", nil)
	}
	if l := r.Latency; l != nil {
		add(fmt.Sprintf("p99 append → delivered at %d events/s", l.Rate), "< 200 ms", fmt.Sprintf("%.0f ms", l.P99Ms), is(l.P99Ms < 200 && l.Samples > 0 && l.Missing == 0))
	} else {
		add("p99 append → delivered at 5,000 events/s", "< 200 ms", "skipped", nil)
	}
	// Sustained load means the pipeline: the engine phase alone says
	// nothing about the memory of `vigil run`. It is the latency phase
	// when its peak was measured on its own: the throughput phases store a
	// whole file or burst as fast as they can, and the server keeps about
	// 10 s of what it stored in memory (docs/benchmarks.md), which a
	// steady rate never reaches.
	switch {
	case r.Latency != nil && r.PerPhaseRSS:
		rss := r.Latency.PeakRSSBytes
		add("peak RSS under sustained load", "< 256 MiB", fmt.Sprintf("%.0f MiB (latency phase)", float64(rss)/mib), is(rss < 256*mib))
	case r.EndToEnd != nil || r.Webhook != nil || r.Latency != nil:
		add("peak RSS under sustained load", "< 256 MiB", fmt.Sprintf("%.0f MiB", float64(r.PeakRSSBytes)/mib), is(r.PeakRSSBytes < 256*mib))
	default:
		add("peak RSS under sustained load", "< 256 MiB", "no pipeline phase run", nil)
	}
	if j := r.JQ; j != nil && j.Ran {
		add("vigil (full pack) / jq (one rule), same events", "≥ 3×", fmt.Sprintf("%.1f×", j.Ratio), is(j.Ratio >= 3))
	} else {
		add("vigil (full pack) / jq (one rule), same events", "≥ 3×", "not run", nil)
	}
	return out
}

func rate(perSec float64) string { return fmt.Sprintf("%s events/s", thousands(perSec)) }

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as tables.
func (r *Report) WriteText(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s %s/%s\n", m.CPUs, m.CPUModel, m.GoVersion, m.OS, m.Arch)
	wl := r.Workload
	fmt.Fprintf(w, "workload: seed %d, %d events (real-cluster log of %d lines replayed; %.1f%% attacks; %.1f%% RequestResponse with %d–%d KiB bodies), %d rules\n\n",
		wl.Seed, wl.Events, wl.CorpusEvents, 100*wl.AttackShare, 100*wl.LargeShare, wl.LargeBodyBytes[0]>>10, wl.LargeBodyBytes[1]>>10, wl.Rules)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tevents\tevents/s\tns/event\tCPU ns/event\tallocs/event\tB/event\tpeak RSS\t")
	row := func(name string, t Throughput) {
		peak := "-"
		if t.PeakRSSBytes > 0 {
			peak = fmt.Sprintf("%.0f MiB", float64(t.PeakRSSBytes)/mib)
		}
		allocs, perEvent := "-", "-"
		if t.AllocsPerEvent > 0 {
			allocs, perEvent = fmt.Sprintf("%.1f", t.AllocsPerEvent), thousands(t.BytesPerEvent)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, t.Events, thousands(t.EventsPerSec), thousands(t.NsPerEvent), thousands(t.CPUNsPerEvent), allocs, perEvent, peak)
	}
	row("engine (1 core, decode+eval)", *r.Engine)
	if e := r.EndToEnd; e != nil {
		row("end to end (file→JetStream→engine→webhook)", e.Throughput)
	}
	if wh := r.Webhook; wh != nil {
		row(fmt.Sprintf("webhook ingest, segments (%d clients × %d)", wh.Clients, wh.Batch), wh.Throughput)
	}
	if wh := r.WebhookSingle; wh != nil {
		row(fmt.Sprintf("webhook ingest, 1 event/message (%d clients × %d)", wh.Clients, wh.Batch), wh.Throughput)
	}
	if j := r.JQ; j != nil && j.Ran {
		row("replay, full pack, 1 core (same file as jq)", j.Vigil)
		row("jq, one rule", j.JQ)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if e := r.EndToEnd; e != nil {
		fmt.Fprintf(w, "end to end alerts: %d expected, %d delivered, %d missing, %d unexpected, %d duplicated; %d of %d events evaluated\n",
			e.ExpectedAlerts, e.Delivered, e.Missing, e.Unexpected, e.Duplicates, e.Evaluated, e.Events)
	}
	for _, wh := range []*Webhook{r.Webhook, r.WebhookSingle} {
		if wh == nil {
			continue
		}
		what := "one message per event"
		if wh.Segments {
			what = "segments"
		}
		fmt.Fprintf(w, "webhook (%s): %d requests (%d failed), %d of %d events stored on AUDIT in %d messages\n", what, wh.Requests, wh.Failed, wh.Stored, wh.Events, wh.Messages)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "latency append→delivered at %d events/s for %.0fs (achieved %s events/s): p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d alerts (%d expected, %d missing), peak RSS %.0f MiB\n",
			l.Rate, l.Seconds, thousands(l.AchievedRate), l.P50Ms, l.P99Ms, l.MaxMs, l.Samples, l.ExpectedAlerts, l.Missing, float64(l.PeakRSSBytes)/mib)
	}
	if j := r.JQ; j != nil {
		if j.Ran {
			fmt.Fprintf(w, "vigil / jq: %.1f× by wall time, %.1f× by CPU time (%s: jq matched %d events, vigil %d)\n", j.Ratio, j.CPURatio, j.Rule, j.JQMatches, j.VigilMatches)
		} else {
			fmt.Fprintf(w, "jq: not run: %s\n", j.Reason)
		}
	}
	scope := "per phase"
	if !r.PerPhaseRSS {
		scope = "cumulative: the kernel did not allow resetting the peak"
	}
	fmt.Fprintf(w, "peak RSS of the run: %.0f MiB (%s)\n\n", float64(r.PeakRSSBytes)/mib, scope)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tgoal\tmeasured\t")
	for _, t := range r.Targets {
		met := "not measured"
		if t.Met != nil {
			met = "not met"
			if *t.Met {
				met = "met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Figure, t.Target, t.Measured, met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "\nPROBLEM: %s\n", p)
	}
	return nil
}
