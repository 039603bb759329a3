package notify

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// Three destinations read the same alerts from their own consumers; the
// route table is walked once per alert between them, and each passes on
// only what is routed to it, with the route's grouping.
func TestRouteStageRoutesEachAlertOnce(t *testing.T) {
	e := newEnv(t)
	routes := []Route{
		{Match: Match{Severity: []string{"critical"}}, To: []string{"pager"}, Continue: true},
		{Match: Match{Severity: []string{"high", "critical"}}, To: []string{"siem"}, GroupBy: []string{"rule"}},
		{Match: Match{}, To: []string{"chat"}},
	}
	dests := []string{"pager", "siem", "chat"}
	r, err := newRouter(dests, routes, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	crit, high, low := alerttest.Sample(), alerttest.Sample(), alerttest.Sample()
	crit.ID, crit.Severity = "crit", alert.SeverityCritical
	high.ID = "high"
	low.ID, low.Severity = "low", alert.SeverityLow
	want := map[string][]string{"pager": {"crit"}, "siem": {"crit", "high"}, "chat": {"low"}}

	consumers := map[string]func(int) []item{}
	for _, d := range dests {
		c := e.consumer(d, time.Minute)
		consumers[d] = func(n int) []item { return e.fetch(c, n) }
	}
	e.publish(crit, high, low)
	for _, d := range dests {
		s := &routeStage{router: r, dest: d, settle: e.settler(d)}
		got := s.exec(context.Background(), consumers[d](3))
		if !slices.Equal(ids(got), want[d]) {
			t.Errorf("%s: passed on %v, want %v", d, ids(got), want[d])
		}
		for _, it := range got {
			if wantGrouped := d == "siem"; it.grouping.enabled() != wantGrouped {
				t.Errorf("%s: alert %s grouped = %v, want %v", d, it.a.ID, it.grouping.enabled(), wantGrouped)
			}
		}
		// What is not routed here is acknowledged; what is, is not yet.
		waitFor(t, d+" acknowledging what is not its", func() bool { return e.ackPending(d)() == len(want[d]) })
	}
	if w := r.current().walks; w != 3 {
		t.Errorf("the table was walked %d times for 3 alerts and 3 destinations, want 3", w)
	}
}

func TestRouteMemoIsBounded(t *testing.T) {
	tbl, err := newRouteTable([]Route{{Match: Match{Severity: []string{"high"}}, To: []string{"siem"}}}, []string{"siem"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a := alerttest.Sample()
	for seq := uint64(1); seq <= 3*routeMemoSize; seq++ {
		tbl.resolve(seq, a)
	}
	if n := len(tbl.memo) + len(tbl.older); n > 2*routeMemoSize {
		t.Errorf("the memo holds %d routings, want at most %d", n, 2*routeMemoSize)
	}
	walks := tbl.walks
	tbl.resolve(3*routeMemoSize, a) // recent: remembered
	if tbl.walks != walks {
		t.Error("a recent alert's routing was computed again")
	}
	if r, ok := tbl.resolve(1, a).To("siem"); !ok || r != 0 || tbl.walks != walks+1 {
		t.Errorf("a forgotten alert: route %d ok=%v after %d walks, want route 0 from a new walk", r, ok, tbl.walks-walks)
	}
	// Without a sequence nothing is remembered.
	tbl.resolve(0, a)
	tbl.resolve(0, a)
	if n := len(tbl.memo) + len(tbl.older); n > 2*routeMemoSize {
		t.Errorf("the memo grew to %d on alerts without a sequence", n)
	}
}

// SetRoutes starts a new table with a memo of its own, so an alert routed
// before the swap is routed by the new routes after it; an unknown
// destination is refused and the running table stays.
func TestSetRoutesSwapsTheTableAndItsMemo(t *testing.T) {
	d, err := NewDispatcher(nil, []Destination{discardDest(t, "siem"), discardDest(t, "chat")},
		[]Route{{To: []string{"siem"}}}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := alerttest.Sample()
	if _, ok := d.router.current().resolve(7, a).To("siem"); !ok {
		t.Fatal("alert not routed to siem")
	}
	if err := d.SetRoutes([]Route{{To: []string{"chat"}}}); err != nil {
		t.Fatal(err)
	}
	rt := d.router.current().resolve(7, a)
	if _, ok := rt.To("siem"); ok {
		t.Error("the old table's routing outlived SetRoutes")
	}
	if _, ok := rt.To("chat"); !ok {
		t.Error("the new routes are not in force")
	}
	before := d.router.current()
	err = d.SetRoutes([]Route{{To: []string{"chat"}}, {To: []string{"pagr"}}})
	if err == nil || !strings.Contains(err.Error(), `routes[1]: unknown destination "pagr"`) {
		t.Errorf("SetRoutes with an unknown destination: %v", err)
	}
	if d.router.current() != before {
		t.Error("a refused SetRoutes replaced the table")
	}
	err = d.SetRoutes([]Route{{Match: Match{When: `alert.nmespace == "team-a"`}, To: []string{"chat"}}})
	if err == nil || !strings.Contains(err.Error(), `routes[0]: when: 1:7: unknown field "nmespace" of alert, did you mean "namespace"?`) {
		t.Errorf("SetRoutes with a bad condition: %v", err)
	}
	if d.router.current() != before {
		t.Error("a SetRoutes refused for its condition replaced the table")
	}
}

// Through the pipeline, on a real JetStream to real HTTP receivers: team-a's
// alerts go to team-a's destination, cluster-scoped RBAC changes to the
// security one, and the rest elsewhere.
func TestRoutesByNamespace(t *testing.T) {
	e := newEnv(t)
	teamA, security, rest := newSink(t), newSink(t), newSink(t)
	e.run(testSetup(
		[]Destination{webhookDest(t, "team-a", teamA.srv.URL), webhookDest(t, "security", security.srv.URL), webhookDest(t, "rest", rest.srv.URL)},
		Route{Match: Match{Namespace: []string{"team-a"}}, To: []string{"team-a"}},
		Route{Match: Match{When: `alert.namespace == "" && alert.resource in ["clusterroles", "clusterrolebindings"]`}, To: []string{"security"}},
		Route{To: []string{"rest"}},
	))

	inTeamA, inTeamB, inDefault, rbac, node := alerttest.Sample(), alerttest.Sample(), alerttest.Sample(), alerttest.Sample(), alerttest.Sample()
	inTeamA.ID, inTeamA.Namespace = "a", "team-a"
	inTeamB.ID, inTeamB.Namespace = "b", "team-a-staging" // exact: not team-a
	inDefault.ID = "default"
	rbac.ID, rbac.Namespace, rbac.Resource = "rbac", "", "clusterrolebindings"
	node.ID, node.Namespace, node.Resource = "node", "", "nodes"
	e.publish(inTeamA, inTeamB, inDefault, rbac, node)
	for _, d := range []string{"team-a", "security", "rest"} {
		waitFor(t, d+" settled", e.settled(d))
	}
	for _, tc := range []struct {
		name string
		s    *sink
		want []string
	}{
		{"team-a", teamA, []string{"a"}},
		{"security", security, []string{"rbac"}},
		{"rest", rest, []string{"b", "default", "node"}},
	} {
		got := tc.s.delivered(t)
		if len(got) != len(tc.want) {
			t.Errorf("%s got %v, want %v", tc.name, got, tc.want)
		}
		for _, id := range tc.want {
			if got[id] != 1 {
				t.Errorf("%s got %q %d times, want once", tc.name, id, got[id])
			}
		}
	}
}
