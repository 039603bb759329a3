package engine

import (
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// FutureTolerance is how far ahead of the time it was stored an event's
// own time may be before the apiserver's clock counts as ahead: clocks
// disciplined by NTP agree within milliseconds, and an event is always
// written before it is stored.
const FutureTolerance = time.Second

// WindowTime is the time an event counts at in threshold windows: its own
// time, or the time it was stored if that is earlier. An apiserver whose
// clock runs ahead would otherwise push every other apiserver's events out
// of the windows it shares with them, and keep a group quiet after an
// alert for as long as it is ahead. A clock running behind needs no such
// care: its events count in windows of their own, and events that are
// really old (a backlog read after an outage) must keep their own times.
func WindowTime(ev *audit.Event) time.Time {
	t := ev.Time()
	if !ev.Stored.IsZero() && t.After(ev.Stored) {
		return ev.Stored
	}
	return t
}

// FromTheFuture reports whether ev's time is ahead of when it was stored by
// more than FutureTolerance: the clock of the apiserver that wrote it is.
func FromTheFuture(ev *audit.Event) bool {
	return !ev.Stored.IsZero() && ev.Time().Sub(ev.Stored) > FutureTolerance
}
