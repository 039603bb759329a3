package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/config"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Streaming rules and alerting for Kubernetes audit logs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newRoleCmd(app.RoleAll, "run", "Run the whole pipeline in one process (embedded NATS unless nats.url is set)"),
		newRoleCmd(app.RoleIngest, "ingest", "Tail audit logs and receive the audit webhook, publishing to NATS"),
		newRoleCmd(app.RoleWorker, "worker", "Evaluate rules on the AUDIT stream and publish alerts"),
		newRoleCmd(app.RoleNotify, "notify", "Deliver alerts to Slack, webhooks and stdout"),
		newRulesCmd(),
		newReplayCmd(),
		newPolicyCmd(),
		newSourcesCmd(),
		newSilenceCmd(),
		newBenchCmd(),
		newVersionCmd(),
	)
	return root
}

func newRoleCmd(roles app.Role, use, short string) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log)
			a, err := app.New(cfg, roles, logger)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			// SIGHUP reloads rules and routes, as for most daemons.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						logger.Info("SIGHUP: reloading rules and routes")
						_ = a.Reload(ctx)
					}
				}
			}()
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "vigil.yaml", "configuration file")
	return cmd
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			c := commit
			if c == "" {
				if info, ok := debug.ReadBuildInfo(); ok {
					for _, s := range info.Settings {
						if s.Key == "vcs.revision" {
							c = s.Value
						}
					}
				}
			}
			if c == "" {
				c = "unknown"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vigil %s (commit %s, %s %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
