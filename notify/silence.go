package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/silence"
)

// silenceStage keeps the alerts a silence holds for from this destination:
// each is recorded in the silences bucket (which silence, when, for which
// destination), then acknowledged, and never sent. The alert stays on
// ALERTS as it was. It comes after route, so that an alert routed nowhere
// here is not recorded as silenced here; after dedupe, so that an alert
// already delivered here and delivered again (a lost ack) is not recorded
// as kept from here by a silence added since; and before group, so that a
// silenced alert holds no group open.
type silenceStage struct {
	set   *silence.Set
	store *silence.Store
	dest  string
	// silenced counts, by rule, the alerts whose silencing is the first
	// one anywhere.
	silenced *prometheus.CounterVec
	settle   *settler
	backoff  backoff.Policy
	now      func() time.Time
	logger   *slog.Logger
}

func (s *silenceStage) exec(ctx context.Context, items []item) []item {
	now := s.now()
	out := items[:0]
	for _, it := range items {
		m := s.set.Match(it.a, now)
		if m == nil {
			out = append(out, it)
			continue
		}
		first, err := s.record(ctx, it, m.ID, now)
		if err != nil {
			// Not silenced unrecorded: the alert comes back, and is
			// recorded then, or delivered if the silence has ended.
			s.logger.Warn("recording a silenced alert failed; it will be tried again", "alert", it.a.ID, "silence", m.ID, "err", err)
			s.settle.nak(it.msg, s.backoff.Delay(int(it.attempts())))
			continue
		}
		if first {
			s.silenced.WithLabelValues(it.a.Rule).Inc()
		}
		s.logger.Debug("alert silenced", "alert", it.a.ID, "rule", it.a.Rule, "silence", m.ID)
		s.settle.ack(it.msg)
	}
	return out
}

func (s *silenceStage) record(ctx context.Context, it item, id string, now time.Time) (bool, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return s.store.Record(rctx, silence.Record{
		Silence: id, Alert: it.a.ID, Rule: it.a.Rule, Dest: s.dest, At: now.UTC(),
	})
}
