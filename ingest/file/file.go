// Package file follows the audit logs kube-apiserver writes with
// --audit-log-path and publishes every line, surviving rotation (rename,
// copytruncate, truncation), restarts and files that do not exist yet.
//
// Progress is kept in a checkpoint per log under the data directory: the
// identity of the file (device and inode, plus a fingerprint of its first
// bytes against inode reuse) and the offset after the last line whose
// events the Publisher has stored. A restart resumes there, also when the
// log was rotated meanwhile: the checkpointed file is found among the
// rotated backups by its identity and finished first.
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Batch bounds: enough events per Publish that the Publisher can pipeline
// acknowledgements, few enough to bound memory and the work redone after a
// crash.
const (
	maxBatchEvents = 1024
	maxBatchBytes  = 8 << 20
)

// Retry bounds for a Publisher that fails. The log file is the buffer, so
// ingest waits for JetStream as long as it takes rather than skip lines.
const (
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 5 * time.Second
)

// Source tails one log, or every active log matching a glob.
type Source struct {
	pattern    string
	glob       bool
	startAtEnd bool
	maxLine    int
	maxDepth   int
	poll       time.Duration
	ckDir      string
	log        *slog.Logger
	metrics    *metrics.Metrics
}

// New checks cfg and prepares the checkpoint folder under dataDir. Zero
// values of cfg take the defaults of package config.
func New(cfg config.FileSource, dataDir string, logger *slog.Logger) (*Source, error) {
	if cfg.Path == "" {
		return nil, errors.New("file source: path is required")
	}
	if _, err := filepath.Match(cfg.Path, ""); err != nil {
		return nil, fmt.Errorf("file source %q: bad glob: %w", cfg.Path, err)
	}
	s := &Source{
		pattern:  cfg.Path,
		glob:     hasMeta(cfg.Path),
		maxLine:  cfg.MaxLineBytes,
		maxDepth: cfg.MaxJSONDepth,
		poll:     cfg.PollInterval,
		log:      logger,
	}
	switch cfg.StartAt {
	case "", config.StartBeginning:
	case config.StartEnd:
		s.startAtEnd = true
	default:
		return nil, fmt.Errorf("file source %q: start_at must be %q or %q, got %q", cfg.Path, config.StartBeginning, config.StartEnd, cfg.StartAt)
	}
	switch {
	case s.maxLine < 0:
		return nil, fmt.Errorf("file source %q: max_line_bytes must be positive, got %d", cfg.Path, s.maxLine)
	case s.maxLine == 0:
		s.maxLine = config.DefaultMaxLineBytes
	}
	switch {
	case s.maxDepth < 0 || s.maxDepth > audit.MaxDepth:
		return nil, fmt.Errorf("file source %q: max_json_depth must be between 1 and %d, got %d", cfg.Path, audit.MaxDepth, s.maxDepth)
	case s.maxDepth == 0:
		s.maxDepth = audit.MaxDepth
	}
	switch {
	case s.poll < 0:
		return nil, fmt.Errorf("file source %q: poll_interval must be positive, got %s", cfg.Path, s.poll)
	case s.poll == 0:
		s.poll = config.DefaultPollInterval
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("source", "file")
	if dataDir == "" {
		return nil, fmt.Errorf("file source %q: a data directory is required for checkpoints", cfg.Path)
	}
	s.ckDir = filepath.Join(dataDir, "checkpoints", "file")
	if err := os.MkdirAll(s.ckDir, 0o750); err != nil {
		return nil, fmt.Errorf("file source %q: checkpoint folder: %w", cfg.Path, err)
	}
	return s, nil
}

// SetMetrics makes the source report into m what only it knows: its
// checkpoint offsets and lines over max_line_bytes. Events stored and dead
// letters are counted by whoever wraps the Publisher. Call it before Run.
func (s *Source) SetMetrics(m *metrics.Metrics) { s.metrics = m }

func hasMeta(p string) bool {
	return slices.ContainsFunc([]byte(p), func(c byte) bool { return c == '*' || c == '?' || c == '[' || c == '\\' })
}

// Run follows the log(s) and publishes their events until ctx is done; it
// returns nil then. It returns an error only when a log cannot be followed
// at all (unreadable, or its checkpoint cannot be written). A data_dir that
// is full is waited out: saving checkpoints is retried with backoff, and
// publishing waits for JetStream as always.
func (s *Source) Run(ctx context.Context, pub ingest.Publisher) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		started  = map[string]bool{}
		first    = true
	)
	start := func(path string, startAtEnd bool) {
		started[path] = true
		t := newTailer(s, path, pub, startAtEnd)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.run(ctx); err != nil && ctx.Err() == nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("file source %s: %w", path, err) })
				cancel()
			}
		}()
	}
	if !s.glob {
		start(s.pattern, s.startAtEnd)
		<-ctx.Done()
		wg.Wait()
		return firstErr
	}
	// A glob is matched again on every poll: an apiserver added to the
	// control plane brings its log.
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return firstErr
		case <-timer.C:
		}
		matches, err := filepath.Glob(s.pattern)
		if err != nil {
			// New checked the pattern, so this cannot happen; stop loudly if it does.
			cancel()
			wg.Wait()
			return fmt.Errorf("file source %q: %w", s.pattern, err)
		}
		for _, m := range matches {
			if started[m] || isBackupName(filepath.Base(m)) {
				continue
			}
			if fi, err := os.Stat(m); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			s.log.Info("following log", "log", m, "pattern", s.pattern)
			start(m, first && s.startAtEnd)
		}
		first = false
		timer.Reset(s.poll)
	}
}
