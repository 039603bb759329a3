package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/alert/alertcel"
)

// Route sends the alerts it matches to destinations. Routes are tried in
// order and the first match wins, unless it says Continue. With any of the
// grouping settings the route's alerts are grouped, and the intervals left
// zero take DefaultGroupWait, DefaultGroupInterval and
// DefaultRepeatInterval.
type Route struct {
	Match Match
	// To names destinations.
	To []string
	// GroupBy are the labels (GroupLabels, or GroupAll) whose equal values
	// put alerts in one notification.
	GroupBy        []string
	GroupWait      time.Duration
	GroupInterval  time.Duration
	RepeatInterval time.Duration
	// Continue tries the routes below too.
	Continue bool
}

// Match selects alerts; empty lists match everything, and an alert must
// satisfy every non-empty list and When. Lists compare values exactly, as
// written; an empty string in Namespace selects cluster-scoped objects.
type Match struct {
	Severity  []string
	Rules     []string
	Tags      []string
	Cluster   []string
	Namespace []string
	User      []string
	Resource  []string
	// When is a CEL condition over the alert (internal/alert/alertcel),
	// for what lists cannot say: prefixes, groups, several fields at once.
	// Empty holds for every alert.
	When string
}

// Grouping defaults, Alertmanager's, used when a route configures some
// grouping but not every interval.
const (
	DefaultGroupWait      = 30 * time.Second
	DefaultGroupInterval  = 5 * time.Minute
	DefaultRepeatInterval = 4 * time.Hour
)

// route is a Route ready to be walked: its condition compiled and its
// grouping worked out.
type route struct {
	Route
	when     *alertcel.Program // nil without a condition
	grouping grouping
}

// compileRoutes compiles each route's condition.
func compileRoutes(routes []Route) ([]route, error) {
	out := make([]route, len(routes))
	for i, r := range routes {
		out[i] = route{Route: r, grouping: groupingOf(r)}
		if r.Match.When == "" {
			continue
		}
		prg, err := alertcel.Compile(r.Match.When)
		if err != nil {
			return nil, fmt.Errorf("notify: routes[%d]: when: %w", i, err)
		}
		out[i].when = prg
	}
	return out, nil
}

// matches reports whether a satisfies the route's match: every non-empty
// list must contain the alert's value (for tags, any of its tags), and the
// condition must hold. A condition that cannot be evaluated on a does not
// hold, and the error says why: the alert goes on to the routes below,
// as if this one did not select it.
func (r *route) matches(a *alert.Alert) (bool, error) {
	m := r.Match
	for _, l := range []struct {
		list []string
		v    string
	}{{m.Severity, a.Severity}, {m.Rules, a.Rule}, {m.Cluster, a.Cluster}, {m.Namespace, a.Namespace}, {m.User, a.User}, {m.Resource, a.Resource}} {
		if len(l.list) > 0 && !slices.Contains(l.list, l.v) {
			return false, nil
		}
	}
	if len(m.Tags) > 0 && !slices.ContainsFunc(a.Tags, func(t string) bool { return slices.Contains(m.Tags, t) }) {
		return false, nil
	}
	if r.when == nil {
		return true, nil
	}
	return r.when.Eval(a)
}

// Routing is where one alert goes: each destination it is sent to and the
// route that sends it there.
type Routing []Target

// Target is one destination of an alert and the index of the route that
// sends it there; -1 when there are no routes and every alert goes to
// every destination, ungrouped.
type Target struct {
	Dest  string
	Route int
}

// To returns the route that sends the alert to dest, if any does.
func (r Routing) To(dest string) (route int, ok bool) {
	for _, t := range r {
		if t.Dest == dest {
			return t.Route, true
		}
	}
	return 0, false
}

// resolve walks routes for a: routes are tried in order, and the first
// match wins and ends the search unless it says continue; a destination
// reached by several routes takes the first. With no routes, a goes to
// every one of dests, ungrouped. failed is told of each condition that
// could not be evaluated.
func resolve(routes []route, dests []string, a *alert.Alert, failed func(i int, err error)) Routing {
	if len(routes) == 0 {
		out := make(Routing, len(dests))
		for i, d := range dests {
			out[i] = Target{Dest: d, Route: -1}
		}
		return out
	}
	var out Routing
	for i := range routes {
		r := &routes[i]
		ok, err := r.matches(a)
		if err != nil {
			failed(i, err)
		}
		if !ok {
			continue
		}
		for _, to := range r.To {
			if _, dup := out.To(to); !dup {
				out = append(out, Target{Dest: to, Route: i})
			}
		}
		if !r.Continue {
			break
		}
	}
	return out
}

// grouping is a route's effective grouping; zero means deliver each alert
// as it arrives.
type grouping struct {
	by             []string
	wait, interval time.Duration
	repeat         time.Duration
}

func (g grouping) enabled() bool { return g.wait > 0 || g.interval > 0 || g.repeat > 0 }

func groupingOf(r Route) grouping {
	if len(r.GroupBy) == 0 && r.GroupWait == 0 && r.GroupInterval == 0 && r.RepeatInterval == 0 {
		return grouping{}
	}
	g := grouping{by: r.GroupBy, wait: r.GroupWait, interval: r.GroupInterval, repeat: r.RepeatInterval}
	if g.wait == 0 {
		g.wait = DefaultGroupWait
	}
	if g.interval == 0 {
		g.interval = DefaultGroupInterval
	}
	if g.repeat == 0 {
		g.repeat = DefaultRepeatInterval
	}
	if g.repeat < g.interval {
		g.repeat = g.interval
	}
	return g
}

// GroupAll, as a group_by label, stands for all of GroupLabels.
const GroupAll = "..."

// GroupLabels are the labels alerts can be grouped by.
func GroupLabels() []string {
	return []string{"rule", "severity", "cluster", "user", "namespace", "resource", "verb", "tags"}
}

// GroupKey is the identity of a's group under group_by labels: alerts with
// equal values for every label share a notification.
func GroupKey(by []string, a *alert.Alert) string {
	if slices.Contains(by, GroupAll) {
		by = GroupLabels()
	}
	var b strings.Builder
	for _, l := range by {
		var v string
		switch l {
		case "rule":
			v = a.Rule
		case "severity":
			v = a.Severity
		case "cluster":
			v = a.Cluster
		case "user":
			v = a.User
		case "namespace":
			v = a.Namespace
		case "resource":
			v = a.Resource
		case "verb":
			v = a.Verb
		case "tags":
			// As a set: the order a rule lists its tags in is no
			// difference between alerts.
			tags := slices.Sorted(slices.Values(a.Tags))
			v = strings.Join(tags, "\x1f")
		}
		b.WriteString(l)
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte(0)
	}
	return b.String()
}
