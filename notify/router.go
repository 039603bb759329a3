package notify

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// routeMemoSize is how many alerts' routings one generation of a table's
// memo holds; two generations are kept. Destinations read the same alerts
// at about the same time, so the memo only has to span the gap between
// the first and the last of them; one that lags further (a Slack
// destination working through a backlog at one message a second) walks
// the table itself, with the same result.
const routeMemoSize = 4096

// router is the shared half of the route stage: the routing table in force,
// swapped whole on reload, and with each table a memo of where every
// recent alert goes. Each destination reads every alert from its own
// consumer; through the memo, the table is walked once per alert between
// them all.
type router struct {
	dests  []string
	logger *slog.Logger
	table  atomic.Pointer[routeTable]
}

func newRouter(dests []string, routes []Route, logger *slog.Logger) (*router, error) {
	r := &router{dests: dests, logger: logger}
	if err := r.set(routes); err != nil {
		return nil, err
	}
	return r, nil
}

// set replaces the table. The routes may only name the router's
// destinations, and their conditions must compile; otherwise the table in
// force stays.
func (r *router) set(routes []Route) error {
	for i, rt := range routes {
		for _, to := range rt.To {
			if !slices.Contains(r.dests, to) {
				return fmt.Errorf("notify: routes[%d]: unknown destination %q", i, to)
			}
		}
	}
	t, err := newRouteTable(routes, r.dests, r.logger)
	if err != nil {
		return err
	}
	r.table.Store(t)
	return nil
}

func (r *router) current() *routeTable { return r.table.Load() }

// routeTable is one generation of routes, with the grouping of each and a
// memo of routings, which therefore never outlives the routes it was
// computed from.
type routeTable struct {
	routes []route
	dests  []string
	logger *slog.Logger

	mu    sync.Mutex
	memo  map[routeKey]Routing
	older map[routeKey]Routing
	walks int // times the table was walked, for the memo's tests
}

// routeKey identifies one message of the ALERTS stream, which every
// destination's consumer delivers with the same stream sequence. The
// alert ID guards against a stream recreated with its sequence restarted.
type routeKey struct {
	seq uint64
	id  string
}

func newRouteTable(routes []Route, dests []string, logger *slog.Logger) (*routeTable, error) {
	rs, err := compileRoutes(routes)
	if err != nil {
		return nil, err
	}
	return &routeTable{routes: rs, dests: dests, logger: logger, memo: make(map[routeKey]Routing)}, nil
}

// walk routes a through the table.
func (t *routeTable) walk(a *alert.Alert) Routing {
	return resolve(t.routes, t.dests, a, func(i int, err error) {
		t.logger.Warn("route condition failed on an alert; the route does not take it", "alert", a.ID, "route", i, "err", err)
	})
}

// resolve is walk(a), remembered for the alert's message (seq 0: not
// known, not remembered).
func (t *routeTable) resolve(seq uint64, a *alert.Alert) Routing {
	if seq == 0 {
		return t.walk(a)
	}
	k := routeKey{seq: seq, id: a.ID}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.memo[k]; ok {
		return r
	}
	r, ok := t.older[k]
	if !ok {
		r = t.walk(a)
		t.walks++
	}
	if len(t.memo) >= routeMemoSize {
		t.older, t.memo = t.memo, make(map[routeKey]Routing, routeMemoSize)
	}
	t.memo[k] = r
	return r
}

// grouping is the grouping of route i; none for -1, no routes.
func (t *routeTable) grouping(i int) grouping {
	if i < 0 {
		return grouping{}
	}
	return t.routes[i].grouping
}

// routeStage is the first stage of a destination: it passes on the alerts
// routed to it, each with the route that sends it and that route's
// grouping, and acknowledges the others.
type routeStage struct {
	router *router
	dest   string
	settle *settler
}

func (s *routeStage) exec(_ context.Context, items []item) []item {
	t := s.router.current()
	out := items[:0]
	for _, it := range items {
		ri, ok := t.resolve(it.seq(), it.a).To(s.dest)
		if !ok {
			s.settle.ack(it.msg)
			continue
		}
		it.route, it.grouping = ri, t.grouping(ri)
		out = append(out, it)
	}
	return out
}
