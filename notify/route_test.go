package notify

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// mustCompile compiles routes as the dispatcher does.
func mustCompile(t *testing.T, routes ...Route) []route {
	t.Helper()
	rs, err := compileRoutes(routes)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestMatches(t *testing.T) {
	a := alerttest.Sample() // high, secret-read-by-non-node, prod-eu-1, tags credential-access T1552.007, default/db, system:serviceaccount:default:app
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
		{"namespace", Match{Namespace: []string{"team-a", "default"}}, true},
		{"other namespace", Match{Namespace: []string{"team-a"}}, false},
		{"namespace is exact, not a prefix", Match{Namespace: []string{"def"}}, false},
		{"cluster-scoped only", Match{Namespace: []string{""}}, false},
		{"user", Match{User: []string{"system:serviceaccount:default:app"}}, true},
		{"other user", Match{User: []string{"alice"}}, false},
		{"resource", Match{Resource: []string{"secrets", "configmaps"}}, true},
		{"other resource", Match{Resource: []string{"pods"}}, false},
		{"when holds", Match{When: `alert.namespace.startsWith("def") && alert.user.endsWith(":app")`}, true},
		{"when does not hold", Match{When: `alert.verb == "delete"`}, false},
		{"lists and when", Match{Resource: []string{"secrets"}, When: `alert.name == "db"`}, true},
		{"lists hold, when does not", Match{Resource: []string{"secrets"}, When: `alert.name == "other"`}, false},
		{"all lists must hold", Match{Severity: []string{"high"}, Cluster: []string{"staging"}}, false},
		{"all lists must hold, new ones too", Match{Severity: []string{"high"}, User: []string{"alice"}}, false},
	} {
		r := mustCompile(t, Route{Match: tc.m, To: []string{"x"}})[0]
		got, err := r.matches(a)
		if err != nil || got != tc.want {
			t.Errorf("%s: matches = %v, %v, want %v", tc.name, got, err, tc.want)
		}
	}
	cs := alerttest.Sample()
	cs.Namespace, cs.Resource = "", "clusterrolebindings"
	r := mustCompile(t, Route{Match: Match{Namespace: []string{""}, Resource: []string{"clusterroles", "clusterrolebindings"}}})[0]
	if ok, _ := r.matches(cs); !ok {
		t.Error(`namespace [""] does not select a cluster-scoped alert`)
	}
}

func TestResolve(t *testing.T) {
	dests := []string{"pager", "slack", "siem"}
	routes := mustCompile(t,
		Route{Match: Match{Severity: []string{"critical"}}, To: []string{"pager"}, Continue: true},
		Route{Match: Match{Severity: []string{"critical", "high"}}, To: []string{"slack", "siem"}},
		Route{Match: Match{}, To: []string{"siem"}},
	)
	noFailure := func(i int, err error) { t.Errorf("route %d failed: %v", i, err) }
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
		r, ok := resolve(routes, dests, tc.a, noFailure).To(tc.dest)
		if ok != tc.wantOK || (ok && r != tc.wantRoute) {
			t.Errorf("%s alert to %s: route %d ok=%v, want route %d ok=%v", tc.a.Severity, tc.dest, r, ok, tc.wantRoute, tc.wantOK)
		}
	}
	// The first matching route without continue ends the search even if
	// it does not name the destination.
	if _, ok := resolve(routes, dests, high, noFailure).To("pager"); ok {
		t.Error("high alert reached pager")
	}
	if r, ok := resolve(nil, []string{"anything"}, low, noFailure).To("anything"); !ok || r != -1 {
		t.Errorf("no routes: got route %d ok=%v, want every destination, ungrouped", r, ok)
	}
}

// A condition that fails on an alert does not take it, and the alert goes
// on to the routes below: it is not lost for a mistake in one route.
func TestResolveFailedConditionFallsThrough(t *testing.T) {
	routes := mustCompile(t,
		Route{Match: Match{When: `alert.sourceIPs[3] == "10.0.0.9"`}, To: []string{"pager"}},
		Route{To: []string{"siem"}},
	)
	var failed []int
	rt := resolve(routes, []string{"pager", "siem"}, alerttest.Sample(), func(i int, err error) {
		if err == nil {
			t.Error("failure reported without an error")
		}
		failed = append(failed, i)
	})
	if _, ok := rt.To("pager"); ok {
		t.Error("a failed condition took the alert")
	}
	if r, ok := rt.To("siem"); !ok || r != 1 {
		t.Errorf("siem: route %d ok=%v, want the route below", r, ok)
	}
	if !slices.Equal(failed, []int{0}) {
		t.Errorf("failures reported for routes %v, want [0]", failed)
	}
}

func TestCompileRoutesRejectsBadConditions(t *testing.T) {
	for _, tc := range []struct{ when, want string }{
		{`alert.namespce == "team-a"`, `notify: routes[1]: when: 1:7: unknown field "namespce" of alert, did you mean "namespace"?`},
		{`alert.namespace`, `notify: routes[1]: when: must be a boolean expression, but this one gives string`},
	} {
		_, err := compileRoutes([]Route{{To: []string{"x"}}, {Match: Match{When: tc.when}, To: []string{"x"}}})
		if err == nil || err.Error() != tc.want {
			t.Errorf("when %s: error %v, want %q", tc.when, err, tc.want)
		}
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
	c := alerttest.Sample()
	slices.Reverse(c.Tags)
	if GroupKey([]string{"tags"}, a) != GroupKey([]string{"tags"}, c) {
		t.Error("same tags in another order: want one group by tags")
	}
	c.Tags = []string{"credential-access"}
	if GroupKey([]string{"tags"}, a) == GroupKey([]string{"tags"}, c) {
		t.Error("different tags grouped together under group_by tags")
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

// BenchmarkResolve walks a table of team routes for one alert, by lists
// and by when conditions: the work done once per alert for every
// destination.
func BenchmarkResolve(b *testing.B) {
	dests := []string{"team-a", "team-b", "security", "siem"}
	a := alerttest.Sample()
	a.Namespace = "team-b-jobs"
	for _, bc := range []struct {
		name   string
		routes []Route
	}{
		{"lists", []Route{
			{Match: Match{Namespace: []string{"team-a", "team-a-jobs"}}, To: []string{"team-a"}},
			{Match: Match{Namespace: []string{"team-b", "team-b-jobs"}}, To: []string{"team-b"}},
			{Match: Match{Namespace: []string{""}, Resource: []string{"clusterroles", "clusterrolebindings"}}, To: []string{"security"}},
			{To: []string{"siem"}},
		}},
		{"when", []Route{
			{Match: Match{When: `alert.namespace == "team-a" || alert.namespace.startsWith("team-a-")`}, To: []string{"team-a"}},
			{Match: Match{When: `alert.namespace == "team-b" || alert.namespace.startsWith("team-b-")`}, To: []string{"team-b"}},
			{Match: Match{When: `alert.namespace == "" && alert.resource in ["clusterroles", "clusterrolebindings"]`}, To: []string{"security"}},
			{To: []string{"siem"}},
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rs, err := compileRoutes(bc.routes)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, ok := resolve(rs, dests, a, func(int, error) {}).To("team-b"); !ok {
					b.Fatal("not routed to team-b")
				}
			}
		})
	}
}
