package notify

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// dedupe drops the alerts its destination has already been sent: those
// with a delivery record in the bucket (redelivered after a crash between
// delivery and acknowledgement, delivered by another replica, or replayed),
// and an alert that comes twice in one fetch. Each is acknowledged and
// counted.
type dedupe struct {
	kv         jetstream.KeyValue
	dest       string
	settle     *settler
	duplicates prometheus.Counter
	logger     *slog.Logger
}

func (s *dedupe) exec(ctx context.Context, items []item) []item {
	seen := make(map[string]bool, len(items))
	out := items[:0]
	for _, it := range items {
		if seen[it.a.ID] || s.delivered(ctx, it.a) {
			s.duplicates.Inc()
			s.settle.ack(it.msg)
			continue
		}
		seen[it.a.ID] = true
		out = append(out, it)
	}
	return out
}

func (s *dedupe) delivered(ctx context.Context, a *alert.Alert) bool {
	_, err := s.kv.Get(ctx, sentKey(s.dest, a.ID))
	if err == nil {
		return true
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) && ctx.Err() == nil {
		// Unknown is treated as not delivered: a rare duplicate beats a
		// lost alert.
		s.logger.Warn("dedupe lookup failed", "err", err)
	}
	return false
}
