package app

import (
	"context"

	"github.com/vigil-k8s/vigil/ingest/gke"
	"github.com/vigil-k8s/vigil/internal/config"
)

// gkeSource builds a source reading a GKE cluster's audit log from Pub/Sub.
// It needs no lease: replicas share the subscription's messages, and each
// event's own MsgID makes a redelivered one harmless.
func (a *App) gkeSource(sc config.Source) (source, error) {
	s, err := gke.New(context.Background(), gke.Options{
		Project:                sc.Project,
		Subscription:           sc.Subscription,
		Cluster:                sc.Cluster,
		Endpoint:               sc.Endpoint,
		MaxOutstandingMessages: sc.MaxOutstandingMessages,
		MaxOutstandingBytes:    sc.MaxOutstandingBytes,
		Metrics:                a.metrics,
	}, a.logger.With("role", "ingest"))
	if err != nil {
		return source{}, err
	}
	a.closers = append(a.closers, s.Close)
	name := "gke " + sc.Subscription
	return source{
		kind: gke.Kind, name: name, cluster: sc.Cluster, src: s,
		eventIDs: true, timesItself: true,
		// The replicas share the subscription: one silence of theirs is
		// one alert, whichever replica Pub/Sub gives the messages to.
		watch: a.watch("gke/"+sc.Project+"/"+sc.Subscription, name, sc.Cluster, sc.SilentAfter),
	}, nil
}
