package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check and test rule files",
	}
	cmd.AddCommand(newRulesLintCmd(), newRulesTestCmd())
	return cmd
}

// loadForCheck loads rule files and prints every problem, one per line.
func loadForCheck(cmd *cobra.Command, paths []string, withDefault bool) (*rules.Set, error) {
	set, err := rules.Load(rules.LoadOptions{Paths: paths, Default: withDefault})
	if err == nil {
		return set, nil
	}
	var probs *rules.Problems
	if !errors.As(err, &probs) {
		return nil, err
	}
	for _, p := range probs.List {
		fmt.Fprintln(cmd.OutOrStdout(), p.String())
	}
	return nil, &exitError{code: 1, reason: fmt.Sprintf("%d problems in rule files", len(probs.List))}
}

func newRulesLintCmd() *cobra.Command {
	var withDefault bool
	cmd := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Compile rule files and print every problem as file:line:col: rule-id: message",
		Long: "Lint parses and type-checks every rule, macro, list and test in the given files and folders\n" +
			"(folders are searched for *.yaml and *.yml). It exits 1 if there is any problem.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadForCheck(cmd, args, withDefault)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d rules, %d tests\n", len(set.Rules()), len(set.Tests()))
			return nil
		},
	}
	cmd.Flags().BoolVar(&withDefault, "with-default", false, "load the embedded default pack too, for files that use its lists and macros")
	return cmd
}

func newRulesTestCmd() *cobra.Command {
	var withDefault bool
	cmd := &cobra.Command{
		Use:   "test PATH...",
		Short: "Run the tests of rule files, printing pass or FAIL per case",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadForCheck(cmd, args, withDefault)
			if err != nil {
				return err
			}
			results, err := set.RunTests(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range results {
				c := r.Case
				if r.Passed {
					fmt.Fprintf(out, "pass %s:%d: %s: %s\n", c.File, c.Line, c.Rule, c.Name)
					continue
				}
				failed++
				fmt.Fprintf(out, "FAIL %s:%d: %s: %s: %s\n", c.File, c.Line, c.Rule, c.Name, r.Why)
			}
			fmt.Fprintf(out, "%d passed, %d failed\n", len(results)-failed, failed)
			if failed > 0 {
				return &exitError{code: 1, reason: fmt.Sprintf("%d rule tests failed", failed)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&withDefault, "with-default", false, "load the embedded default pack too, for files that use its lists and macros")
	return cmd
}
