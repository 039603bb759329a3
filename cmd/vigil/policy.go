package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check a kube-apiserver audit policy against the rules, or generate one",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyGenerateCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	var (
		policyPath string
		rulePaths  []string
		output     string
	)
	cmd := &cobra.Command{
		Use:   "check --policy FILE [--rules PATH]... [--output text|json]",
		Short: "Report which rules an audit policy leaves blind or partial",
		Long: "Check evaluates the audit policy with kube-apiserver's own policy code against the requests\n" +
			"each rule can match, and reports per rule: ok, partial (logged at the level the rule needs\n" +
			"only for some users, groups, namespaces, verbs or resources) or blind, with the policy rule\n" +
			"responsible. Without --rules it checks the embedded default pack. It exits 0 whatever it\n" +
			"finds, and 1 when the policy itself is invalid.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			if policyPath == "" {
				return fmt.Errorf("--policy is required")
			}
			p, err := policy.Load(policyPath)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return &exitError{code: 1, reason: "invalid audit policy"}
			}
			set, err := loadForCheck(cmd, rulePaths, len(rulePaths) == 0)
			if err != nil {
				return err
			}
			results := policy.Check(p, set)
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			count := map[policy.Status]int{}
			for _, r := range results {
				count[r.Status]++
				fmt.Fprintf(out, "%-8s %-16s %s: %s\n", r.Status, r.Needs, r.Rule, r.Reason)
			}
			fmt.Fprintf(out, "\n%d rules: %d ok, %d partial, %d blind\n", len(results), count[policy.OK], count[policy.Partial], count[policy.Blind])
			return nil
		},
	}
	cmd.Flags().StringVar(&policyPath, "policy", "", "audit Policy file (audit.k8s.io/v1), as given to --audit-policy-file")
	cmd.Flags().StringArrayVar(&rulePaths, "rules", nil, "rule file or folder (repeatable); without it, the embedded default pack")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (a list of {rule, status, needs, reason})")
	return cmd
}

func newPolicyGenerateCmd() *cobra.Command {
	var rulePaths []string
	cmd := &cobra.Command{
		Use:   "generate [--rules PATH]...",
		Short: "Print the smallest audit policy under which every rule is ok",
		Long: "Generate prints an audit Policy for --audit-policy-file that logs what the rules need, at the\n" +
			"level they need it, and little else: read-only system traffic is dropped where no rule needs\n" +
			"it, and credentials stay at Metadata unless a rule reads their bodies. Without --rules it\n" +
			"covers the embedded default pack.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := loadForCheck(cmd, rulePaths, len(rulePaths) == 0)
			if err != nil {
				return err
			}
			out, err := policy.Generate(set)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringArrayVar(&rulePaths, "rules", nil, "rule file or folder (repeatable); without it, the embedded default pack")
	return cmd
}
