package app

import (
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/rules"
)

// provisionOptions are what this process decides about JetStream beyond
// cfg.NATS: only processes that evaluate rules bound the threshold bucket
// (engine.max_threshold_groups), so that an ingest or notify process with
// another engine section cannot undo it.
func (a *App) provisionOptions() []bus.ProvisionOption {
	if a.roles&RoleWorker == 0 {
		return nil
	}
	return []bus.ProvisionOption{bus.WithMaxThresholdGroups(a.maxThresholdGroups())}
}

// maxThresholdGroups is engine.max_threshold_groups, defaulted for a
// configuration built in code rather than parsed.
func (a *App) maxThresholdGroups() int {
	if n := a.cfg.Engine.MaxThresholdGroups; n > 0 {
		return n
	}
	return config.DefaultMaxThresholdGroups
}

// ruleOptions are the rule files of cfg with its limits on what one
// evaluation may cost (engine.max_rule_cost, engine.max_object_bytes), each
// object over the limit counted in vigil_limit_exceeded_total.
func (a *App) ruleOptions(cfg *config.Config) rules.LoadOptions {
	return rules.LoadOptions{
		Paths:   cfg.Rules,
		Default: cfg.UseDefaultRules(),
		Limits: rules.Limits{
			Cost:             cfg.Engine.MaxRuleCost,
			ObjectBytes:      cfg.Engine.MaxObjectBytes,
			OnObjectTooLarge: a.metrics.LimitExceeded.WithLabelValues("max_object_bytes").Inc,
		},
	}
}
