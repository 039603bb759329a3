package app

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/ingest/eks"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
)

// pollingSource builds a source that reads a managed cluster's audit log
// from its cloud. Of several ingest replicas only the one holding the
// source's lease polls; its cursor is in JetStream, so another replica
// (or this one restarted) resumes where it stopped.
func (a *App) pollingSource(sc config.Source) (source, error) {
	if sc.Type == config.SourceKafka {
		return a.kafkaSource(sc)
	}
	if sc.Type == config.SourceGKE {
		return a.gkeSource(sc)
	}
	logger := a.logger.With("role", "ingest")
	s, err := eks.New(context.Background(), eksOptions(sc, a.metrics), logger)
	if err != nil {
		return source{}, err
	}
	holder := leaseHolder()
	return source{
		kind:        eks.Kind,
		name:        "eks " + sc.LogGroup,
		cluster:     sc.Cluster,
		eventIDs:    true,
		timesItself: true,
		watch:       a.watch(s.Key(), "eks "+sc.LogGroup, sc.Cluster, sc.SilentAfter),
		bind: func(ctx context.Context, js jetstream.JetStream) (ingest.Source, error) {
			cursors, err := js.KeyValue(ctx, bus.BucketCursors)
			if err != nil {
				return nil, fmt.Errorf("cursor bucket: %w", err)
			}
			leases, err := js.KeyValue(ctx, bus.BucketLeases)
			if err != nil {
				return nil, fmt.Errorf("lease bucket: %w", err)
			}
			return s.With(bus.NewCursors(cursors), bus.NewLease(leases, s.Key(), holder, bus.LeaseTTL, logger)), nil
		},
	}, nil
}

// leaseHolder names this process in the leases it holds: the pod name
// (the hostname in Kubernetes) and the process id.
func leaseHolder() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}
