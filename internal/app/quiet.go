package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/quiet"
)

// watch is the silence watch of a source named key in the bucket, nil
// when its silent_after is off (or, in a configuration built in code,
// not set).
func (a *App) watch(key, name, cluster string, after *config.Interval) *quiet.Watch {
	if after == nil || after.Off() {
		return nil
	}
	return quiet.New(quiet.Source{Key: key, Name: name, Cluster: cluster, After: after.Duration}, a.metrics, a.logger.With("role", "ingest"))
}

// fileWatchKey names a file source in the bucket. Every node tails its own
// apiserver's log at the same path, so the key holds this machine's
// identity: kept in data_dir beside the checkpoints, it survives a new pod
// (whose host name changes) as they do.
func fileWatchKey(dataDir, path string) (string, error) {
	id, err := instanceID(dataDir)
	if err != nil {
		return "", err
	}
	return "file." + hashKey(id, path), nil
}

// webhookWatchKey names the webhook of a cluster: every replica receives
// part of one apiserver's batches, and the source is silent only when
// none receives any.
func webhookWatchKey(cluster string) string { return "webhook." + hashKey(cluster) }

// hashKey makes free text a key-value key of fixed length and alphabet.
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// instanceFile holds the identity of the machine a data_dir belongs to.
const instanceFile = "instance"

// instanceID reads the identity kept in dataDir, making one the first
// time.
func instanceID(dataDir string) (string, error) {
	p := filepath.Join(dataDir, instanceFile)
	data, err := os.ReadFile(p)
	if err == nil && len(strings.TrimSpace(string(data))) > 0 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("instance id: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	id := rand.Text()
	// Written aside and renamed, so that a crash leaves no empty identity.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return id, nil
}

// hostname says where a file source runs, in its alerts.
func hostname() string {
	host, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return host
}

// runWatches starts the silence watch of each source in st, raising its
// alerts on ALERTS as the engine raises rules'.
func (a *App) runWatches(ctx context.Context, st *stage, js jetstream.JetStream) error {
	var kv jetstream.KeyValue
	for _, s := range a.sources {
		if s.watch == nil {
			continue
		}
		if kv == nil {
			var err error
			if kv, err = js.KeyValue(ctx, bus.BucketSources); err != nil {
				return fmt.Errorf("source bucket: %w", err)
			}
		}
		st.goRun(func(ctx context.Context) error {
			return s.watch.Run(ctx, kv, func(ctx context.Context, al *alert.Alert) error {
				return engine.PublishAlerts(ctx, js, []*alert.Alert{al})
			})
		})
	}
	return nil
}
