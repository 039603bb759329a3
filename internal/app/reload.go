package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules"
)

// Reload re-reads the configuration file (when the App was built from
// one) and the rule files, compiles the new rule set fully and only then
// swaps it in; routes are replaced likewise. On any problem the error is
// returned, each of its problems logged at error, the rejection counted in
// vigil_reload_failures_total, and what runs stays as it was.
// Destinations, sources and NATS settings are not reloaded: they need a
// restart.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	what, err := a.reload(ctx)
	if err == nil || what == "" {
		return err
	}
	a.metrics.ReloadFailures.WithLabelValues(what).Inc()
	// One line per problem: a log search or an editor finds each
	// file:line:col, as in the output of vigil check.
	for p := range strings.SplitSeq(err.Error(), "\n") {
		a.logger.Error("reload rejected; keeping the running rules and routes", "what", what, "problem", p)
	}
	if what == metrics.ReloadRules {
		err = fmt.Errorf("rules: %w", err)
	}
	return err
}

// reload does the work of Reload; on a rejection it says what was
// rejected (metrics.ReloadConfig, …), and "" for an error that is no
// rejection (ctx done after the swap).
func (a *App) reload(ctx context.Context) (string, error) {
	cfg := a.cfg
	if a.cfg.Path != "" {
		if _, err := os.Stat(a.cfg.Path); err == nil {
			if cfg, err = config.Load(a.cfg.Path); err != nil {
				return metrics.ReloadConfig, err
			}
		}
	}
	a.mu.Lock()
	eval, dispatcher := a.eval, a.dispatcher
	a.mu.Unlock()
	var set *rules.Set
	if eval != nil {
		var err error
		set, err = rules.Load(a.ruleOptions(cfg))
		if err != nil {
			return metrics.ReloadRules, err
		}
	}
	if dispatcher != nil {
		if err := dispatcher.SetRoutes(routes(cfg.Routes)); err != nil {
			return metrics.ReloadRoutes, fmt.Errorf("%w (destinations are read at start-up only: a new one needs a restart)", err)
		}
	}
	if set != nil {
		old := eval.Current().Set().Hash()
		eval.Swap(a.newEvaluator(set, eval.Current().Thresholds(), eval.Current().RuleState()))
		if old != set.Hash() {
			a.metrics.RulesInfo.DeleteLabelValues(old)
		}
		a.metrics.RulesInfo.WithLabelValues(set.Hash()).Set(1)
		a.logger.Info("rules reloaded", "rules", len(set.Rules()), "version", set.Hash(), "previous", old)
		logRuleWarnings(a.logger, set)
	}
	return "", ctx.Err()
}

func (a *App) newEvaluator(set *rules.Set, th, state engine.ThresholdStore) *engine.Evaluator {
	return engine.NewEvaluator(set, th, engine.WithMetrics(a.metrics), engine.WithRuleState(state))
}

// RulesVersion is the hash of the rule set the workers run ("" without
// the worker role).
func (a *App) RulesVersion() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eval == nil {
		return a.rulesVersion()
	}
	return a.eval.Current().Set().Hash()
}

func (a *App) rulesVersion() string {
	if a.rules == nil {
		return ""
	}
	return a.rules.Hash()
}

// watchFiles reloads when the configuration file or a rule file changes,
// until ctx is done. It compares contents, not times: a ConfigMap update
// swaps links and keeps no meaningful modification time.
func (a *App) watchFiles(ctx context.Context) error {
	last := a.fingerprint()
	interval := a.cfg.Reload.Interval
	if interval <= 0 {
		interval = config.DefaultReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fp := a.fingerprint()
		if fp == last {
			continue
		}
		last = fp
		a.logger.Info("configuration or rule files changed; reloading")
		_ = a.Reload(ctx)
	}
}

// fingerprint hashes the configuration file and every rule file. Files
// that cannot be read count by their error, so that a file coming back
// triggers a reload.
func (a *App) fingerprint() string {
	h := sha256.New()
	add := func(path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			data = []byte("error: " + err.Error())
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%x\n", path, sum)
	}
	if a.cfg.Path != "" {
		add(a.cfg.Path)
	}
	for _, p := range a.cfg.Rules {
		for _, f := range ruleFiles(p) {
			add(f)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ruleFiles lists what rules.Load would read under p.
func ruleFiles(p string) []string {
	st, err := os.Stat(p)
	if err != nil || !st.IsDir() {
		return []string{p}
	}
	files, err := rules.Files(p)
	if err != nil {
		return []string{p}
	}
	return files
}

// logRuleWarnings logs what rule lint warns of, which does not stop a load.
func logRuleWarnings(logger *slog.Logger, set *rules.Set) {
	for _, w := range set.Warnings() {
		logger.Warn("rule warning", "problem", w.String())
	}
}
