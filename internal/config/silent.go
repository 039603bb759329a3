package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/quiet"
)

// MinSilentAfter is the shortest silent_after: an apiserver logs lease
// renewals every few seconds, and a shorter silence is a pause, not a
// stopped audit log.
const MinSilentAfter = time.Second

// Interval is a duration that 0 or "off" turns off.
type Interval struct {
	time.Duration
	// bad is the value as written when it is neither a duration nor off,
	// reported with its key and position by validate.
	bad string
}

// Off reports whether the interval turns its feature off.
func (i Interval) Off() bool { return i.Duration == 0 }

// UnmarshalYAML reads "5m", "0" or "off".
func (i *Interval) UnmarshalYAML(n *yaml.Node) error {
	*i = Interval{}
	if n.Kind != yaml.ScalarNode {
		i.bad = "a " + map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}[n.Kind]
		return nil
	}
	if n.Value == "off" || n.Value == "0" {
		return nil
	}
	// A bad value is reported by validate, which knows its key.
	if d, err := time.ParseDuration(n.Value); err == nil {
		i.Duration = d
	} else {
		i.bad = fmt.Sprintf("%q", n.Value)
	}
	return nil
}

// MarshalYAML writes the interval as it is read.
func (i Interval) MarshalYAML() (any, error) {
	if i.Off() {
		return "off", nil
	}
	return i.String(), nil
}

// setSilentDefaults gives ingest.silent_after its default and each source
// without its own silent_after the section's.
func (c *Config) setSilentDefaults() {
	in := &c.Ingest
	if in.SilentAfter == nil {
		in.SilentAfter = &Interval{Duration: quiet.DefaultAfter}
	}
	inherit := func(p **Interval) {
		if *p == nil {
			v := *in.SilentAfter
			*p = &v
		}
	}
	for i := range in.Files {
		inherit(&in.Files[i].SilentAfter)
	}
	if in.Webhook != nil {
		inherit(&in.Webhook.SilentAfter)
	}
	for i := range in.Sources {
		inherit(&in.Sources[i].SilentAfter)
	}
}

// validateSilent checks ingest.silent_after and each source's, each
// problem at its line and column.
func (c *Config) validateSilent(root *yaml.Node, add func(error)) {
	check := func(v *Interval, path ...any) {
		if v == nil {
			return
		}
		line, col := position(root, path)
		switch {
		case v.bad != "":
			add(fmt.Errorf("%s:%d:%d: %s: %s is not a duration (like 5m) or off", c.Path, line, col, pathString(path), v.bad))
		case v.Duration < 0:
			add(fmt.Errorf("%s:%d:%d: %s: must not be negative, got %s (0 or off: never)", c.Path, line, col, pathString(path), v.Duration))
		case !v.Off() && v.Duration < MinSilentAfter:
			add(fmt.Errorf("%s:%d:%d: %s: %s is shorter than %s: an apiserver pauses that long between events (0 or off: never)", c.Path, line, col, pathString(path), v.Duration, MinSilentAfter))
		}
	}
	check(c.Ingest.SilentAfter, "ingest", "silent_after")
	for i, f := range c.Ingest.Files {
		check(f.SilentAfter, "ingest", "files", i, "silent_after")
	}
	if w := c.Ingest.Webhook; w != nil {
		check(w.SilentAfter, "ingest", "webhook", "silent_after")
	}
	for i, s := range c.Ingest.Sources {
		check(s.SilentAfter, "ingest", "sources", i, "silent_after")
	}
}
