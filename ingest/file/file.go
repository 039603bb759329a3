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
//
// Events are stored in segments named by the span of the file they come
// from. Before a batch is published, its cut is recorded in the checkpoint
// (a write-ahead intent); a restart re-reads the batch, cuts it where the
// intent says and names the segments as before, so JetStream drops the
// copies of those it had stored: a crash between a PubAck and the
// checkpoint stores nothing twice.
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
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

// Batch bounds: enough events per Publish that the Publisher can pipeline
// acknowledgements, few enough to bound memory and the work redone after a
// crash.
const (
	maxBatchEvents = 1024
	maxBatchBytes  = 8 << 20
)

// retryBackoff paces the retries of a Publisher that fails and of a
// checkpoint that cannot be saved. The log file is the buffer, so ingest
// waits for JetStream as long as it takes rather than skip lines.
var retryBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Where a log without checkpoint is read from (Options.StartAt).
const (
	StartBeginning = "beginning"
	StartEnd       = "end"
)

// Defaults of Options.
const (
	DefaultMaxLineBytes = 16 << 20
	DefaultPollInterval = 50 * time.Millisecond
)

// Options configure a file source. Zero fields take the defaults.
type Options struct {
	// Path is a log file or a glob of them (one log per apiserver).
	Path string
	// StartAt is where a log with no checkpoint is read from:
	// StartBeginning (the default) or StartEnd.
	StartAt string
	// MaxLineBytes is the longest line accepted (DefaultMaxLineBytes);
	// longer ones are dead-lettered.
	MaxLineBytes int
	// MaxJSONDepth bounds the nesting of one event (audit.MaxDepth, the
	// most any decoding accepts); deeper is dead-lettered.
	MaxJSONDepth int
	// PollInterval is how often an idle log is checked
	// (DefaultPollInterval).
	PollInterval time.Duration
	// DataDir holds the checkpoints, under checkpoints/file. Required.
	DataDir string
	// Metrics receive what only the source knows: its checkpoint offsets
	// and the limits it enforced. Events stored and dead letters are
	// counted by whoever wraps the Publisher. Nil: metrics of its own,
	// registered nowhere.
	Metrics *metrics.Metrics
}

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

	// afterStore, when set, is called each time a batch is stored, before
	// the checkpoint says so: tests kill the process there.
	afterStore func()
}

// New checks o and prepares the checkpoint folder.
func New(o Options, logger *slog.Logger) (*Source, error) {
	if o.Path == "" {
		return nil, errors.New("file source: path is required")
	}
	if _, err := filepath.Match(o.Path, ""); err != nil {
		return nil, fmt.Errorf("file source %q: bad glob: %w", o.Path, err)
	}
	s := &Source{
		pattern:  o.Path,
		glob:     hasMeta(o.Path),
		maxLine:  o.MaxLineBytes,
		maxDepth: o.MaxJSONDepth,
		poll:     o.PollInterval,
		log:      logger,
		metrics:  o.Metrics,
	}
	switch o.StartAt {
	case "", StartBeginning:
	case StartEnd:
		s.startAtEnd = true
	default:
		return nil, fmt.Errorf("file source %q: start_at must be %q or %q, got %q", o.Path, StartBeginning, StartEnd, o.StartAt)
	}
	switch {
	case s.maxLine < 0:
		return nil, fmt.Errorf("file source %q: max_line_bytes must be positive, got %d", o.Path, s.maxLine)
	case s.maxLine == 0:
		s.maxLine = DefaultMaxLineBytes
	}
	switch {
	case s.maxDepth < 0 || s.maxDepth > audit.MaxDepth:
		return nil, fmt.Errorf("file source %q: max_json_depth must be between 1 and %d, got %d", o.Path, audit.MaxDepth, s.maxDepth)
	case s.maxDepth == 0:
		s.maxDepth = audit.MaxDepth
	}
	switch {
	case s.poll < 0:
		return nil, fmt.Errorf("file source %q: poll_interval must be positive, got %s", o.Path, s.poll)
	case s.poll == 0:
		s.poll = DefaultPollInterval
	}
	if s.metrics == nil {
		s.metrics = metrics.New(nil)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("source", "file")
	if o.DataDir == "" {
		return nil, fmt.Errorf("file source %q: a data directory is required for checkpoints", o.Path)
	}
	s.ckDir = filepath.Join(o.DataDir, "checkpoints", "file")
	if err := os.MkdirAll(s.ckDir, 0o750); err != nil {
		return nil, fmt.Errorf("file source %q: checkpoint folder: %w", o.Path, err)
	}
	return s, nil
}

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
