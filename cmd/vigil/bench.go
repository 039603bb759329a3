package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/internal/bench"
)

func newBenchCmd() *cobra.Command {
	var (
		opts       bench.Options
		output     string
		skip       []string
		cpuProfile string
		memProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench [--events N] [--output text|json] [--rate R] [--duration D] [--skip e2e,webhook,latency,jq]",
		Short: "Measure vigil on a deterministic, realistic workload",
		Long: "Bench replays a real cluster's audit log (shipped in the binary) with fresh auditIDs and\n" +
			"timestamps, mixed with attacks and RequestResponse events with large bodies, and measures:\n" +
			"the engine alone on one core; file → JetStream → engine → webhook end to end; webhook\n" +
			"ingest, storing segments and, for comparison, one message per event; append-to-delivered\n" +
			"latency at a fixed rate; peak RSS; and jq with one rule.\n" +
			"It uses the machine fully: run it on an otherwise idle machine for figures that compare.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			for _, s := range skip {
				for p := range strings.SplitSeq(s, ",") {
					if p = strings.TrimSpace(p); p != "" {
						opts.Skip = append(opts.Skip, p)
					}
				}
			}
			errOut := cmd.ErrOrStderr()
			opts.Logger = slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelError}))
			opts.Progress = func(phase string) { fmt.Fprintf(errOut, "bench: %s...\n", phase) }
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			r, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if memProfile != "" {
				if err := writeAllocsProfile(memProfile); err != nil {
					return err
				}
			}
			if output == "json" {
				err = r.WriteJSON(cmd.OutOrStdout())
			} else {
				err = r.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if len(r.Problems) > 0 {
				return fmt.Errorf("bench: %d correctness problems (see the report): the figures do not count", len(r.Problems))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&opts.Events, "events", "n", bench.DefaultEvents, "events in the throughput phases")
	f.StringVarP(&output, "output", "o", "text", "text or json (one object)")
	f.IntVar(&opts.Rate, "rate", bench.DefaultRate, "events/s appended in the latency phase")
	f.DurationVar(&opts.Duration, "duration", bench.DefaultDuration, "length of the latency phase")
	f.Uint64Var(&opts.Seed, "seed", bench.DefaultSeed, "workload seed; the same seed gives the same events")
	f.StringSliceVar(&skip, "skip", nil, "phases to skip: e2e, webhook, latency, jq")
	f.StringVar(&opts.TempDir, "tmpdir", "", "where JetStream stores and logs are written (default: the system's temp dir)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	f.StringVar(&memProfile, "memprofile", "", "write the allocations of the whole run to this file (for go tool pprof -sample_index=alloc_space)")
	return cmd
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// writeAllocsProfile writes what the run allocated, by where, to path.
func writeAllocsProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("--memprofile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--memprofile %s: %w", path, err)
	}
	return nil
}
