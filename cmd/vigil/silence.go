package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/silence"
)

// silenceTimeout bounds what one silence command asks of NATS.
const silenceTimeout = 30 * time.Second

func newSilenceCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "silence",
		Short: "Keep alerts from destinations for a while, and audit what a silence kept",
		Long: "A silence keeps the alerts it matches — of one rule, for which a CEL condition over the alert\n" +
			"holds, or both — from every destination until it ends or is expired. Silenced alerts stay on\n" +
			"the ALERTS stream, and each one is recorded under the silence (`vigil silence show`).\n" +
			"The commands reach the deployment's NATS as the --config file says: nats.url, or nats.listen of\n" +
			"`vigil run`'s embedded server.",
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "vigil.yaml", "configuration file of the deployment")
	cmd.AddCommand(newSilenceAddCmd(&cfgPath), newSilenceListCmd(&cfgPath), newSilenceExpireCmd(&cfgPath), newSilenceShowCmd(&cfgPath))
	return cmd
}

// withStore runs f with the deployment's silences.
func withStore(cmd *cobra.Command, cfgPath string, f func(ctx context.Context, st *silence.Store) error) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	nc, js, err := app.Connect(cfg, "vigil-silence", newLogger(cmd.ErrOrStderr(), cfg.Log))
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), silenceTimeout)
	defer cancel()
	st, err := silence.Open(ctx, js)
	if err != nil {
		return err
	}
	return f(ctx, st)
}

func newSilenceAddCmd(cfgPath *string) *cobra.Command {
	var spec silence.Spec
	cmd := &cobra.Command{
		Use:   "add --rule ID [--when CEL] --for DURATION --comment TEXT [--author NAME]",
		Short: "Silence a rule's alerts, or those a CEL condition holds for; prints the silence's id",
		Long: "--when is a CEL boolean over `alert`, with the alert's JSON fields: alert.user, alert.namespace,\n" +
			"alert.name, alert.severity, alert.tags, … It is type-checked now, and again by each notifier.\n" +
			"At least one of --rule and --when is needed; with both, both must hold.",
		Example: `  vigil silence add --rule privileged-container --when 'alert.namespace == "kube-system"' \
    --for 2h --comment "CNI upgrade, CHG-1234"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("author") {
				spec.Author = osUser()
			}
			s, err := silence.New(spec, time.Now())
			if err != nil {
				return err
			}
			return withStore(cmd, *cfgPath, func(ctx context.Context, st *silence.Store) error {
				if err := st.Add(ctx, s); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), s.ID)
				fmt.Fprintf(cmd.ErrOrStderr(), "silence %s in force until %s\n", s.ID, s.EndsAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&spec.Rule, "rule", "", "id of the rule whose alerts to silence")
	cmd.Flags().StringVar(&spec.When, "when", "", "CEL condition over alert that must hold")
	cmd.Flags().DurationVar(&spec.For, "for", 0, fmt.Sprintf("how long the silence lasts, e.g. 90m or 24h (at most %s)", silence.Days(silence.MaxDuration)))
	cmd.Flags().StringVar(&spec.Comment, "comment", "", "why: the change, incident or ticket")
	cmd.Flags().StringVar(&spec.Author, "author", "", "who adds it (default: the user running the command)")
	return cmd
}

// osUser names whoever runs the command.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func newSilenceListCmd(cfgPath *string) *cobra.Command {
	var (
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "list [--all] [--output text|json]",
		Short: "List the silences in force; with --all, those that ended too",
		Long:  fmt.Sprintf("An ended silence is listed by --all for at least %s after it ended.", silence.Days(silence.Retention)),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withStore(cmd, *cfgPath, func(ctx context.Context, st *silence.Store) error {
				list, err := st.List(ctx)
				if err != nil {
					return err
				}
				now := time.Now()
				shown := list[:0]
				for _, s := range list {
					if all || s.Active(now) {
						shown = append(shown, s)
					}
				}
				if output == "json" {
					return writeJSON(cmd.OutOrStdout(), views(shown, now))
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSTATE\tENDS\tRULE\tWHEN\tCREATED BY\tCOMMENT")
				for _, s := range shown {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State(now), s.End().Format(time.RFC3339),
						orDash(s.Rule), orDash(oneLine(s.When)), s.CreatedBy, oneLine(s.Comment))
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list ended silences too")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newSilenceExpireCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "expire ID",
		Short: "End a silence now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, *cfgPath, func(ctx context.Context, st *silence.Store) error {
				s, err := st.Expire(ctx, args[0], time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "silence %s expired at %s\n", s.ID, s.End().Format(time.RFC3339))
				return nil
			})
		},
	}
}

func newSilenceShowCmd(cfgPath *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID [--output text|json]",
		Short: "Show a silence and every alert it kept from a destination",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return withStore(cmd, *cfgPath, func(ctx context.Context, st *silence.Store) error {
				s, err := st.Get(ctx, args[0])
				if errors.Is(err, silence.ErrNotFound) {
					return fmt.Errorf("%w (an ended silence is kept for %s at least)", err, silence.Days(silence.Retention))
				}
				if err != nil {
					return err
				}
				recs, err := st.Records(ctx, s.ID)
				if err != nil {
					return err
				}
				now := time.Now()
				if output == "json" {
					return writeJSON(cmd.OutOrStdout(), struct {
						silenceView
						Silenced []silence.Record `json:"silenced"`
					}{views([]*silence.Silence{s}, now)[0], recs})
				}
				out := cmd.OutOrStdout()
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, kv := range [][2]string{
					{"id", s.ID}, {"state", s.State(now)}, {"rule", orDash(s.Rule)}, {"when", orDash(s.When)},
					{"created by", s.CreatedBy}, {"created at", s.CreatedAt.Format(time.RFC3339)},
					{"ends at", s.EndsAt.Format(time.RFC3339)}, {"expired at", expiredAt(s)}, {"comment", s.Comment},
				} {
					fmt.Fprintf(w, "%s:\t%s\n", kv[0], kv[1])
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(out, "\nsilenced %d alerts:\n", len(recs))
				w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "AT\tALERT\tRULE\tDESTINATION")
				for _, r := range recs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.At.Format(time.RFC3339), r.Alert, r.Rule, r.Dest)
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// silenceView is a silence as the commands print it in JSON: with its
// state at the time of the command.
type silenceView struct {
	*silence.Silence
	State string `json:"state"`
}

func views(list []*silence.Silence, now time.Time) []silenceView {
	out := make([]silenceView, len(list))
	for i, s := range list {
		out[i] = silenceView{Silence: s, State: s.State(now)}
	}
	return out
}

func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("--output %q: want text or json", output)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func expiredAt(s *silence.Silence) string {
	if s.ExpiredAt == nil {
		return "-"
	}
	return s.ExpiredAt.Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
