package app

import (
	"fmt"
	"strings"

	"github.com/vigil-k8s/vigil/ingest/kafka"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/tlsconfig"
)

// kafkaSource builds a consumer group member. Its offsets are the group's,
// in Kafka: any number of ingest replicas share the partitions.
func (a *App) kafkaSource(sc config.Source) (source, error) {
	o, err := kafkaOptions(sc, a)
	if err != nil {
		return source{}, err
	}
	s, err := kafka.New(o, a.logger.With("role", "ingest"))
	if err != nil {
		return source{}, err
	}
	name := "kafka " + strings.Join(sc.Topics, ",")
	return source{
		kind:    kafka.Kind,
		name:    name,
		cluster: sc.Cluster,
		src:     s,
		// A record read again after a crash or a rebalance is decoded
		// anew: only per-event MsgIDs make it a duplicate JetStream drops.
		eventIDs:    true,
		timesItself: true,
		// The members of one group share the topics: one silence of theirs
		// is one alert, whichever member holds the partitions.
		watch: a.watch("kafka/"+o.Group+"/"+strings.Join(sc.Topics, ","), name+" (group "+o.Group+")", sc.Cluster, sc.SilentAfter),
	}, nil
}

// kafkaOptions reads the source's TLS files and secrets now, so that a
// missing one stops start-up.
func kafkaOptions(sc config.Source, a *App) (kafka.Options, error) {
	o := kafka.Options{
		Cluster:        sc.Cluster,
		Brokers:        sc.Brokers,
		Topics:         sc.Topics,
		Group:          sc.Group,
		StartAt:        sc.StartAt,
		MaxPollRecords: sc.MaxPollRecords,
		FetchMaxBytes:  sc.FetchMaxBytes,
		Metrics:        a.metrics,
	}
	if t := sc.TLS; t != nil {
		tc, err := tlsconfig.Client(tlsconfig.Files{CA: t.CA, Cert: t.Cert, Key: t.Key})
		if err != nil {
			return o, fmt.Errorf("kafka tls: %w", err)
		}
		o.TLS = tc
	}
	if s := sc.SASL; s != nil {
		what, env, file := "kafka sasl password", s.PasswordEnv, s.PasswordFile
		if strings.EqualFold(s.Mechanism, kafka.SASLOAuthBearer) {
			what, env, file = "kafka sasl token", s.TokenEnv, s.TokenFile
		}
		if _, err := config.Secret(what, env, file); err != nil {
			return o, err
		}
		// Read on every authentication: a rotated file (a Secret
		// updated in place) is used from the next connection on.
		m, err := kafka.NewSASL(s.Mechanism, s.Username, func() (string, error) { return config.Secret(what, env, file) })
		if err != nil {
			return o, err
		}
		o.SASL = m
	}
	return o, nil
}
