package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/policy"
)

func newSourcesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sources",
		Short: "What the managed clusters' audit sources (GKE, EKS, AKS) take from the rules",
	}
	cmd.AddCommand(newSourcesCheckCmd())
	return cmd
}

func newSourcesCheckCmd() *cobra.Command {
	var (
		names     []string
		rulePaths []string
		output    string
	)
	var known []string
	for _, s := range provider.Sources() {
		known = append(known, s.Name)
	}
	cmd := &cobra.Command{
		Use:   "check [--source NAME]... [--rules PATH]... [--output text|json]",
		Short: "Report which rules lose what on each managed source",
		Long: "Check compares what each rule decides on (the event fields its condition, threshold,\n" +
			"exceptions and suppression read, and the requests it can match) with what each managed\n" +
			"source delivers of kube-apiserver's audit events, and reports per rule: ok, partial (it\n" +
			"decides on less, or misses some requests) or blind (it can never fire there), saying what\n" +
			"is lost. A rule reading a value a source never carries is blind when none of its own tests\n" +
			"expecting a match still match without it. Without --rules it checks the embedded default\n" +
			"pack; without --source, every source. It exits 0 whatever it finds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			for _, n := range names {
				if !slices.Contains(known, n) {
					return fmt.Errorf("--source %q: want one of %v", n, known)
				}
			}
			set, err := loadForCheck(cmd, rulePaths, len(rulePaths) == 0)
			if err != nil {
				return err
			}
			var results []policy.SourceResult
			out := cmd.OutOrStdout()
			for _, src := range provider.Sources() {
				if len(names) > 0 && !slices.Contains(names, src.Name) {
					continue
				}
				rs := policy.CheckSource(src, set)
				results = append(results, rs...)
				if output == "text" {
					printSourceCheck(out, src, rs)
				}
			}
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&names, "source", nil, fmt.Sprintf("source to check (repeatable): one of %v; without it, all", known))
	cmd.Flags().StringArrayVar(&rulePaths, "rules", nil, "rule file or folder (repeatable); without it, the embedded default pack")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (a list of {source, rule, status, losses})")
	return cmd
}

// printSourceCheck prints the rules that lose something, blind first,
// those that lose the same things together, and a count of each status.
func printSourceCheck(out io.Writer, src provider.Source, rs []policy.SourceResult) {
	fmt.Fprintf(out, "%s: %s\n", src.Name, src.Title)
	for _, n := range src.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	count := map[policy.Status]int{}
	for _, r := range rs {
		count[r.Status]++
	}
	for _, status := range []policy.Status{policy.Blind, policy.Partial} {
		var keys []string
		groups := map[string][]string{}
		losses := map[string][]string{}
		for _, r := range rs {
			if r.Status != status {
				continue
			}
			key := strings.Join(r.Losses, "\n")
			if _, ok := groups[key]; !ok {
				keys = append(keys, key)
				losses[key] = r.Losses
			}
			groups[key] = append(groups[key], r.Rule)
		}
		for _, key := range keys {
			for i, line := range wrapIDs(groups[key], 88) {
				label := ""
				if i == 0 {
					label = string(status)
				}
				fmt.Fprintf(out, "  %-8s %s\n", label, line)
			}
			for _, l := range losses[key] {
				fmt.Fprintf(out, "           - %s\n", l)
			}
		}
	}
	fmt.Fprintf(out, "  %d rules: %d ok, %d partial, %d blind\n\n", len(rs), count[policy.OK], count[policy.Partial], count[policy.Blind])
}

// wrapIDs joins ids with ", " into lines of at most width characters.
func wrapIDs(ids []string, width int) []string {
	var lines []string
	line := ""
	for i, id := range ids {
		sep := ""
		if i < len(ids)-1 {
			sep = ","
		}
		switch {
		case line == "":
			line = id + sep
		case len(line)+1+len(id)+len(sep) > width:
			lines = append(lines, line)
			line = id + sep
		default:
			line += " " + id + sep
		}
	}
	return append(lines, line)
}
