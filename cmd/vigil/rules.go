package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check and test rule files",
	}
	cmd.AddCommand(newRulesLintCmd(), newRulesTestCmd(), newRulesExportDefaultCmd())
	return cmd
}

func newRulesExportDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export-default DIR",
		Short: "Write the embedded default rule pack to DIR, to read, test or start from",
		Long: "export-default writes the default pack's rule files and the test data they read into DIR\n" +
			"(created if needed), so that `vigil rules test DIR` runs its tests. It never overwrites a file.\n" +
			"To tune the pack, prefer a file of overrides loaded with it over editing a copy: see docs/rules.md.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.CopyFS(dir, rules.DefaultPack()); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%w (export-default never overwrites; choose an empty folder)", err)
				}
				return err
			}
			files, err := rules.Files(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d rule files to %s\n", len(files), dir)
			return nil
		},
	}
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
	errs := 0
	for _, p := range probs.List {
		fmt.Fprintln(cmd.OutOrStdout(), p.String())
		if !p.Warning {
			errs++
		}
	}
	return nil, &exitError{code: 1, reason: fmt.Sprintf("%d problems in rule files", errs)}
}

func newRulesLintCmd() *cobra.Command {
	var withDefault bool
	cmd := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Compile rule files and print every problem as file:line:col: rule-id: message",
		Long: "Lint parses and type-checks every rule, macro, list and test in the given files and folders\n" +
			"(folders are searched for *.yaml and *.yml). It exits 1 if there is any problem; warnings\n" +
			"(file:line:col: rule-id: warning: message), such as a body field read without optional\n" +
			"syntax or has(), are printed but do not fail it.",
		Args: pathsOrDefault(&withDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadForCheck(cmd, args, withDefault)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, w := range set.Warnings() {
				fmt.Fprintln(out, w.String())
			}
			fmt.Fprintf(out, "ok: %d rules, %d tests", len(set.Rules()), len(set.Tests()))
			if n := len(set.Warnings()); n > 0 {
				fmt.Fprintf(out, ", %d warnings", n)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&withDefault, "with-default", false, "load the embedded default pack too, for files that use its lists and macros or override it")
	return cmd
}

func newRulesTestCmd() *cobra.Command {
	var withDefault, onlyDefault bool
	cmd := &cobra.Command{
		Use:   "test [PATH]...",
		Short: "Run the tests of rule files, printing pass or FAIL per case",
		Long: "Test runs every `tests:` case of the given files and folders (with --with-default, of the\n" +
			"embedded default pack too, with the files' overrides applied). Without a path, or with\n" +
			"--default, it runs the embedded default pack's own tests, from the binary. A case fails\n" +
			"when the rule's verdict differs, its output differs, or the rule failed to evaluate on one\n" +
			"of the events.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if onlyDefault && len(args) > 0 {
				return errors.New("--default runs the embedded pack's tests alone; give paths with --with-default instead")
			}
			// The pack's own tests ship in the binary: a user checks the
			// build they run, outside a source checkout.
			set, err := loadForCheck(cmd, args, withDefault || len(args) == 0)
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
	cmd.Flags().BoolVar(&withDefault, "with-default", false, "load the embedded default pack too, for files that use its lists and macros or override it")
	cmd.Flags().BoolVar(&onlyDefault, "default", false, "run the embedded default pack's tests (what no path does)")
	return cmd
}

// pathsOrDefault wants at least one path, unless the default pack is
// loaded, which can be checked on its own.
func pathsOrDefault(withDefault *bool) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 && !*withDefault {
			return errors.New("give at least one rule file or folder, or --with-default for the embedded pack")
		}
		return nil
	}
}
