package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestMatches(t *testing.T) {
	a := alerttest.Sample() // high, secret-read-by-non-node, prod-eu-1, tags credential-access T1552.007
	for _, tc := range []struct {
		name string
		m    Match
		want bool
	}{
		{"empty matches all", Match{}, true},
		{"severity in list", Match{Severity: []string{"critical", "high"}}, true},
		{"severity not in list", Match{Severity: []string{"critical"}}, false},
		{"rule", Match{Rules: []string{"secret-read-by-non-node"}}, true},
		{"other rule", Match{Rules: []string{"exec-into-pod"}}, false},
		{"any tag", Match{Tags: []string{"persistence", "T1552.007"}}, true},
		{"no tag", Match{Tags: []string{"persistence"}}, false},
		{"cluster", Match{Cluster: []string{"prod-eu-1"}}, true},
		{"other cluster", Match{Cluster: []string{"staging"}}, false},
		{"all lists must hold", Match{Severity: []string{"high"}, Cluster: []string{"staging"}}, false},
	} {
		if got := Matches(tc.m, a); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	dests := []string{"pager", "slack", "siem"}
	routes := []Route{
		{Match: Match{Severity: []string{"critical"}}, To: []string{"pager"}, Continue: true},
		{Match: Match{Severity: []string{"critical", "high"}}, To: []string{"slack", "siem"}},
		{Match: Match{}, To: []string{"siem"}},
	}
	crit, high, low := alerttest.Sample(), alerttest.Sample(), alerttest.Sample()
	crit.Severity, low.Severity = alert.SeverityCritical, alert.SeverityLow
	for _, tc := range []struct {
		a         *alert.Alert
		dest      string
		wantRoute int
		wantOK    bool
	}{
		{crit, "pager", 0, true},
		{crit, "slack", 1, true}, // route 0 continues
		{crit, "siem", 1, true},
		{high, "pager", 0, false},
		{high, "slack", 1, true},
		{low, "slack", 0, false},
		{low, "siem", 2, true},
	} {
		r, ok := Resolve(routes, dests, tc.a).To(tc.dest)
		if ok != tc.wantOK || (ok && r != tc.wantRoute) {
			t.Errorf("%s alert to %s: route %d ok=%v, want route %d ok=%v", tc.a.Severity, tc.dest, r, ok, tc.wantRoute, tc.wantOK)
		}
	}
	// The first matching route without continue ends the search even if
	// it does not name the destination.
	if _, ok := Resolve(routes, dests, high).To("pager"); ok {
		t.Error("high alert reached pager")
	}
	if r, ok := Resolve(nil, []string{"anything"}, low).To("anything"); !ok || r != -1 {
		t.Errorf("no routes: got route %d ok=%v, want every destination, ungrouped", r, ok)
	}
}

func TestGroupKey(t *testing.T) {
	a, b := alerttest.Sample(), alerttest.Sample()
	b.User = "mallory"
	if GroupKey([]string{"rule"}, a) != GroupKey([]string{"rule"}, b) {
		t.Error("same rule, different users: want one group by rule")
	}
	if GroupKey([]string{"rule", "user"}, a) == GroupKey([]string{"rule", "user"}, b) {
		t.Error("different users grouped together under group_by user")
	}
	if GroupKey([]string{"..."}, a) == GroupKey([]string{"..."}, b) {
		t.Error(`group_by "..." ignores the user`)
	}
	if GroupKey(nil, a) != GroupKey(nil, b) {
		t.Error("no group_by: want one group for the route")
	}
}

func TestGroupingDefaults(t *testing.T) {
	if groupingOf(Route{}).enabled() {
		t.Error("a route without grouping settings groups")
	}
	g := groupingOf(Route{GroupBy: []string{"rule"}})
	if !g.enabled() || g.wait != DefaultGroupWait || g.interval != DefaultGroupInterval || g.repeat != DefaultRepeatInterval {
		t.Errorf("group_by alone: got %+v, want Alertmanager's defaults", g)
	}
	g = groupingOf(Route{GroupWait: 10 * time.Second, RepeatInterval: time.Minute, GroupInterval: 2 * time.Minute})
	if g.repeat != 2*time.Minute {
		t.Errorf("repeat_interval shorter than group_interval: got %s", g.repeat)
	}
}

func TestNewDispatcherRejectsUnknownRouteTarget(t *testing.T) {
	dests := []Destination{discardDest(t, "siem")}
	_, err := NewDispatcher(nil, dests, []Route{{To: []string{"siem"}}, {To: []string{"pagr"}}}, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), `routes[1]: unknown destination "pagr"`) {
		t.Errorf("got %v", err)
	}
}

func TestNewDispatcherRejectsCollidingConsumerNames(t *testing.T) {
	dests := []Destination{discardDest(t, "sec.ops"), discardDest(t, "sec_ops")}
	_, err := NewDispatcher(nil, dests, nil, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), `"sec.ops" and "sec_ops"`) {
		t.Errorf("got %v", err)
	}
}
