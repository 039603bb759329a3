package engine

import (
	"context"
	"sync/atomic"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// Reloadable is an evaluator whose rule set can be replaced while workers
// use it. Each event is evaluated whole by one set, the old or the new:
// the swap is one atomic pointer store, so no event is dropped or
// evaluated twice by a reload.
type Reloadable struct {
	cur atomic.Pointer[Evaluator]
}

// NewReloadable starts with e.
func NewReloadable(e *Evaluator) *Reloadable {
	r := &Reloadable{}
	r.cur.Store(e)
	return r
}

// Evaluate evaluates ev with the current set.
func (r *Reloadable) Evaluate(ctx context.Context, ev *audit.Event) ([]*alert.Alert, error) {
	return r.cur.Load().Evaluate(ctx, ev)
}

// Swap makes e current and returns the previous evaluator.
func (r *Reloadable) Swap(e *Evaluator) *Evaluator { return r.cur.Swap(e) }

// Current is the evaluator in use.
func (r *Reloadable) Current() *Evaluator { return r.cur.Load() }
