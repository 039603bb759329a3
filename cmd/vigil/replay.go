package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/notify/stdout"
	"github.com/vigil-k8s/vigil/rules"
)

func newReplayCmd() *cobra.Command {
	var (
		rulePaths   []string
		withDefault bool
		output      string
	)
	cmd := &cobra.Command{
		Use:   "replay [--rules PATH]... [--with-default] [--output text|json] FILE...",
		Short: "Evaluate rules over audit log files offline",
		Long: "Replay evaluates rules over audit log files (JSON lines, as kube-apiserver writes them;\n" +
			"\"-\" reads stdin) without NATS. Each line may also be an EventList, a GKE Cloud Audit\n" +
			"LogEntry, an AKS diagnostic record or {\"records\": [...]} document, or a CloudWatch Logs\n" +
			"event, output or S3 export line; a file whose first line is \"{\" or \"[\" holds JSON documents\n" +
			"spanning lines (aws, gcloud, jq . output). Without --rules it uses the embedded default pack;\n" +
			"--with-default loads the pack together with the --rules files, such as tuning overrides.\n" +
			"The text summary shows, per rule, the requests it matched, those exceptions and\n" +
			"suppression windows held back, and the alerts. Malformed lines are reported on stderr and skipped.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			set, err := loadForCheck(cmd, rulePaths, withDefault || len(rulePaths) == 0)
			if err != nil {
				return err
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			// An alert reads the same here as from a running vigil.
			printer, err := stdout.New(out, stdout.WithFormat(output))
			if err != nil {
				return err
			}
			st, err := engine.Replay(cmd.Context(), set, args, engine.ReplayOptions{
				Stdin: cmd.InOrStdin(),
				OnAlert: func(a *alert.Alert) error {
					_, err := printer.Notify(cmd.Context(), a)
					return err
				},
				OnMalformed: func(file string, line int, err error) {
					fmt.Fprintf(errOut, "%s:%d: skipped: %v\n", file, line, err)
				},
			})
			if err != nil {
				return err
			}
			if output == "text" {
				printSummary(cmd, set, st)
			}
			ids := make([]string, 0, len(st.RuleErrors))
			for id := range st.RuleErrors {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids {
				fmt.Fprintf(errOut, "rule %s failed to evaluate on %d events (counted as no match)\n", id, st.RuleErrors[id])
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&rulePaths, "rules", nil, "rule file or folder (repeatable); without it, the embedded default pack")
	cmd.Flags().BoolVar(&withDefault, "with-default", false, "load the embedded default pack together with the --rules files")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (one alert object per line)")
	return cmd
}

// printFormats tells, when the events did not all come as the apiserver's
// own, which records they came in.
func printFormats(out io.Writer, st engine.ReplayStats) {
	if st.Formats[provider.FormatEvent] == st.Events && st.NotAudit == 0 {
		return
	}
	formats := slices.Sorted(maps.Keys(st.Formats))
	slices.SortStableFunc(formats, func(a, b provider.Format) int { return cmp.Compare(st.Formats[b], st.Formats[a]) })
	parts := make([]string, 0, len(formats))
	for _, f := range formats {
		parts = append(parts, fmt.Sprintf("%d from %s", st.Formats[f], f.Name()))
	}
	line := "events: " + strings.Join(parts, ", ")
	if len(parts) == 0 {
		line = "no events"
	}
	if st.NotAudit > 0 {
		line += fmt.Sprintf("; %d records held no Kubernetes audit event", st.NotAudit)
	}
	fmt.Fprintln(out, line)
}

func printSummary(cmd *cobra.Command, set *rules.Set, st engine.ReplayStats) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\n%d events, %d alerts, %d malformed lines skipped\n", st.Events, st.Alerts, st.Malformed)
	printFormats(out, st)
	ids := make([]string, 0, len(st.Matches))
	for id := range st.Matches {
		ids = append(ids, id)
	}
	sev := func(id string) int {
		if r, ok := set.Rule(id); ok {
			return alert.SeverityRank(r.Severity)
		}
		return -1
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(sev(b), sev(a)), cmp.Compare(st.PerRule[b], st.PerRule[a]),
			cmp.Compare(st.Matches[b], st.Matches[a]), cmp.Compare(a, b))
	})
	if len(ids) == 0 {
		return
	}
	fmt.Fprintf(out, "%7s %7s %9s %10s  %-8s %s\n", "alerts", "matches", "excepted", "suppressed", "severity", "rule")
	for _, id := range ids {
		r, _ := set.Rule(id)
		excepted, names := 0, make([]string, 0, len(st.Excepted[id]))
		for name, n := range st.Excepted[id] {
			excepted += n
			names = append(names, name)
		}
		slices.Sort(names)
		fmt.Fprintf(out, "%7d %7d %9d %10d  %-8s %s", st.PerRule[id], st.Matches[id], excepted, st.Suppressed[id], r.Severity, id)
		for i, name := range names {
			sep := ", "
			if i == 0 {
				sep = "  excepted by "
			}
			fmt.Fprintf(out, "%s%s %d", sep, name, st.Excepted[id][name])
		}
		fmt.Fprintln(out)
	}
}
