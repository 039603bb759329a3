package notify

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	delivered  *prometheus.CounterVec
	failures   *prometheus.CounterVec
	dead       *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	truncated  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vigil", Subsystem: "notify", Name: name, Help: help,
		}, []string{"destination"})
	}
	m := &metrics{
		delivered:  vec("delivered_alerts_total", "Alerts delivered to a destination."),
		failures:   vec("failed_attempts_total", "Delivery attempts that failed."),
		dead:       vec("dead_letters_total", "Alerts given up on and published to the dead-letter stream."),
		duplicates: vec("duplicates_skipped_total", "Redelivered alerts not sent again because they were already delivered."),
		truncated:  vec("truncated_texts_total", "Messages delivered with at least one text cut to fit the destination's limits."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.delivered, &m.failures, &m.dead, &m.duplicates, &m.truncated} {
		if err := reg.Register(*c); err != nil {
			// A second dispatcher on the same registry shares the counters.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
			*c = existing
		}
	}
	return m, nil
}
