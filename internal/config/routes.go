package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/alert/alertcel"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// validateRoutes checks the routes against the destinations (names) and
// compiles each route's when, whose problems are placed in the file at
// their line and column (add); the others go through bad.
func (c *Config) validateRoutes(root *yaml.Node, data []byte, names map[string]bool, bad func(path []any, format string, args ...any), add func(error)) {
	dests := slices.Sorted(maps.Keys(names))
	labels := append(notify.GroupLabels(), notify.GroupAll)
	for i, r := range c.Routes {
		p := []any{"routes", i}
		if len(r.To) == 0 {
			bad(p, "to: names no destination")
		}
		for j, to := range r.To {
			if !names[to] {
				bad(append(p, "to", j), "unknown destination %q%s", to, didYouMean(to, dests))
			}
		}
		for j, s := range r.Match.Severity {
			if !alert.ValidSeverity(s) {
				bad(append(p, "match", "severity", j), "unknown severity %q (want info, low, medium, high or critical)", s)
			}
		}
		if r.Match.When != "" {
			c.checkWhen(root, data, append(p, "match", "when"), r.Match.When, add)
		}
		for j, g := range r.GroupBy {
			if !slices.Contains(labels, g) {
				bad(append(p, "group_by", j), "cannot group by %q%s (want one of %s, or %s for all of them)",
					g, didYouMean(g, notify.GroupLabels()), strings.Join(notify.GroupLabels(), ", "), notify.GroupAll)
			}
		}
		if r.GroupWait < 0 || r.GroupInterval < 0 || r.RepeatInterval < 0 {
			bad(p, "durations must not be negative")
		}
	}
}

// checkWhen compiles a route's condition, as the notifier will, and
// reports each problem at its place in the file: "file:line:col: key:
// message".
func (c *Config) checkWhen(root *yaml.Node, data []byte, path []any, when string, add func(error)) {
	_, err := alertcel.Compile(when)
	if err == nil {
		return
	}
	key := pathString(path)
	var ce *alertcel.Error
	n, _ := locate(root, path...)
	if !errors.As(err, &ce) || n == nil || n.Kind != yaml.ScalarNode {
		add(fmt.Errorf("%s: %s: %w", c.Path, key, err))
		return
	}
	x := parse.ExprIn(c.Path, data, n)
	for _, is := range ce.Issues {
		line, col := x.At(is.Line, is.Col)
		add(fmt.Errorf("%s:%d:%d: %s: %s", c.Path, line, col, key, is.Message))
	}
}

// didYouMean is `, did you mean "x"?` for the known word closest to s,
// or nothing.
func didYouMean(s string, known []string) string {
	if k := parse.Suggest(s, known); k != "" {
		return fmt.Sprintf(", did you mean %q?", k)
	}
	return ""
}
