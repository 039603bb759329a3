package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/backoff"
)

// tailer follows one active log path through its rotations.
type tailer struct {
	src        *Source
	path       string
	store      checkpointStore
	pub        ingest.Publisher
	log        *slog.Logger
	startAtEnd bool

	// The file being read; nil while the log does not exist.
	f        *os.File
	id       fileID
	name     string
	rd       *lineReader
	skipLine bool // drop the first line: start_at end landed inside it

	fp    string // fingerprint of the first fpLen bytes of f
	fpLen int64
	saved struct {
		id     fileID
		offset int64
		ok     bool
		intent bool
	}

	batch      []audit.Raw
	offsets    []int64 // where each event of the batch starts in the file
	batchBytes int
	batchStart int64 // where the span of the batch starts in the file

	// replay is the intent of the checkpoint resumed from: the first
	// batch is cut as it says.
	replay *intent

	// While data_dir is full, saving is retried with backoff: not before
	// retryAt; failures counts the attempts that failed.
	ckFull struct {
		failures *backoff.Sequence
		retryAt  time.Time
	}
}

func newTailer(s *Source, path string, pub ingest.Publisher, startAtEnd bool) *tailer {
	t := &tailer{
		src:        s,
		path:       path,
		store:      newCheckpointStore(s.ckDir, path),
		pub:        pub,
		log:        s.log.With("log", path),
		startAtEnd: startAtEnd,
	}
	t.ckFull.failures = retryBackoff.Sequence()
	return t
}

// fileState is what the active path says about the file being read.
type fileState int

const (
	stSame      fileState = iota
	stRotated             // the path now names another file: finish this one, go on
	stTruncated           // this file was cut shorter (or rewritten) in place
)

func (t *tailer) run(ctx context.Context) error {
	defer t.close()
	if err := t.resume(); err != nil {
		return err
	}
	for {
		if t.f == nil {
			ok, err := t.openActive()
			if err != nil {
				return err
			}
			if !ok {
				if err := backoff.Wait(ctx, t.src.poll); err != nil {
					return err
				}
				continue
			}
		}
		// The file is checked before reading, not after: a log truncated
		// and rewritten past the old offset must not be read from there.
		st, err := t.state()
		if err != nil {
			return err
		}
		switch st {
		case stRotated:
			if err := t.finish(ctx); err != nil {
				return err
			}
			if err := t.advance(); err != nil {
				return err
			}
			continue
		case stTruncated:
			if err := t.truncated(ctx); err != nil {
				return err
			}
			continue
		}
		progressed, err := t.readAvailable(ctx)
		if err != nil {
			return err
		}
		if !progressed {
			if err := backoff.Wait(ctx, t.src.poll); err != nil {
				return err
			}
		}
	}
}

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// resume opens the file and offset of the checkpoint, wherever rotation
// has moved the file since.
func (t *tailer) resume() error {
	ck, err := t.store.load()
	if err != nil || ck == nil {
		return err
	}
	// A checkpoint means the log was followed before: nothing after it was
	// seen, so start_at no longer applies.
	t.startAtEnd = false
	cands, err := backupsOf(t.path)
	if err != nil {
		return err
	}
	for _, c := range cands {
		if c.id != ck.id() {
			continue
		}
		f, err := os.Open(c.path)
		if err != nil {
			continue // rotated away since listed; handled as not found
		}
		ok, err := ck.matches(f)
		if err != nil || !ok {
			f.Close()
			continue
		}
		off := ck.Offset
		if fi, err := f.Stat(); err == nil && fi.Size() < off {
			t.log.Warn("log was truncated while stopped; reading it from the start", "file", c.path, "checkpoint", off, "size", fi.Size())
			off = 0
		}
		if err := t.use(f, c.path, off); err != nil {
			return err
		}
		if off == ck.Offset && ck.Intent != nil {
			t.replay = ck.Intent
		}
		t.log.Info("resuming from checkpoint", "file", c.path, "offset", off)
		return nil
	}
	// The checkpointed file is gone (deleted after rotation while stopped).
	// Read every backup written after it; re-reading a few events is
	// harmless, their MsgIDs make JetStream drop the duplicates.
	for _, c := range cands {
		if c.isLog || c.mod.Before(ck.ModAt) {
			continue
		}
		f, err := os.Open(c.path)
		if err != nil {
			continue
		}
		t.log.Warn("checkpointed file no longer exists; events written to it after the checkpoint may be lost", "checkpoint_file", ck.File, "offset", ck.Offset, "continuing_with", c.path)
		return t.use(f, c.path, 0)
	}
	t.log.Warn("checkpointed file no longer exists; events written to it after the checkpoint may be lost", "checkpoint_file", ck.File, "offset", ck.Offset)
	return nil
}

// openActive opens the active log, reporting false when it does not exist.
func (t *tailer) openActive() (bool, error) {
	f, err := os.Open(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open: %w", err)
	}
	var off int64
	if t.startAtEnd {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return false, fmt.Errorf("stat: %w", err)
		}
		off = fi.Size()
		if off > 0 {
			// Starting inside a line would publish its tail as garbage.
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, off-1); err != nil {
				f.Close()
				return false, fmt.Errorf("read: %w", err)
			}
			t.skipLine = b[0] != '\n'
		}
		t.log.Info("no checkpoint; starting at the end of the log", "offset", off)
	}
	t.startAtEnd = false
	if err := t.use(f, t.path, off); err != nil {
		return false, err
	}
	return true, t.checkpoint()
}

// use makes f, positioned at off, the file being read.
func (t *tailer) use(f *os.File, name string, off int64) error {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seek %s to %d: %w", name, off, err)
	}
	// Bad lines are reported by number, which a checkpoint does not hold:
	// count them once on resume (an audit log rotates at a few hundred MB,
	// which takes well under a second).
	num, err := countLines(f, off)
	if err != nil {
		t.log.Warn("counting lines before the checkpoint failed; bad lines will be reported by offset only", "file", name, "err", err)
		num = -1
	}
	t.close()
	t.f, t.id, t.name = f, idOf(fi), name
	t.rd = newLineReader(f, off, t.src.maxLine, num+1)
	t.fp, t.fpLen = "", 0
	t.batchStart, t.replay = off, nil
	return nil
}

// readAvailable publishes every complete line up to the end of the file,
// checkpointing after each batch. It reports whether it read anything.
//
// A full batch is published in the background while the next one is read
// and parsed, so that waiting for acknowledgements and decoding overlap;
// at most one batch is in flight, and it is always waited for before
// readAvailable returns. The checkpoint that records the next batch's
// intent also records that the one before it is stored.
func (t *tailer) readAvailable(ctx context.Context) (bool, error) {
	start := t.rd.ReadPos()
	var inFlight chan error
	wait := func() error {
		if inFlight == nil {
			return nil
		}
		err := <-inFlight
		inFlight = nil
		return err
	}
	for {
		l, err := t.rd.next()
		if errors.Is(err, errNoLine) {
			break
		}
		if err != nil {
			_ = wait()
			return false, fmt.Errorf("read %s: %w", t.name, err)
		}
		if err := t.takeFingerprint(); err != nil {
			_ = wait()
			return false, err
		}
		if err := t.handle(ctx, l); err != nil {
			_ = wait()
			return false, err
		}
		if t.batchFull() {
			if err := wait(); err != nil {
				return false, err
			}
			b, err := t.takeBatch()
			if err != nil {
				return false, err
			}
			inFlight = make(chan error, 1)
			go func() { inFlight <- t.publish(ctx, b) }()
		}
	}
	if err := wait(); err != nil {
		return false, err
	}
	if err := t.flush(ctx); err != nil {
		return false, err
	}
	return t.rd.ReadPos() != start, nil
}

// batchFull reports whether the batch is to be published now: at its
// bounds, or, re-reading what an intent recorded, once all of that is read.
func (t *tailer) batchFull() bool {
	if t.replay != nil {
		return t.rd.Offset() >= t.replay.end()
	}
	return len(t.batch) >= maxBatchEvents || t.batchBytes >= maxBatchBytes
}

// batch is what takeBatch hands over: events, where they start in the
// file, and, when the Publisher takes segments, their cut with the
// segments' names.
type batch struct {
	events    []audit.Raw
	offsets   []int64
	segmented bool
	ends      []int
	ids       []string
}

// takeBatch hands over the batch read so far, cut into segments, once the
// checkpoint records the cut.
func (t *tailer) takeBatch() (batch, error) {
	b := batch{events: t.batch, offsets: t.offsets}
	start, end := t.batchStart, t.rd.Offset()
	t.batch = make([]audit.Raw, 0, maxBatchEvents)
	t.offsets = make([]int64, 0, maxBatchEvents)
	t.batchBytes, t.batchStart = 0, end
	replay := t.replay
	t.replay = nil
	sp, ok := t.pub.(ingest.SegmentPublisher)
	if !ok || len(b.events) == 0 {
		return b, nil
	}
	b.segmented = true
	var in *intent
	if replay != nil {
		in = replay.clip(end)
	} else if in = t.cut(sp, b, end); len(in.Ends) == 0 {
		return b, nil // every event too large alone: dead-lettered, not stored
	}
	b.ends, b.ids = in.segments(b.offsets, start)
	return b, t.save(start, in)
}

// cut is the intent of a batch read afresh: where the Publisher would cut
// it, each segment spanning the file up to where the next one starts.
func (t *tailer) cut(sp ingest.SegmentPublisher, b batch, end int64) *intent {
	in := &intent{Fingerprint: t.fp}
	ends := sp.Cuts(b.events)
	for i, e := range ends {
		if i == len(ends)-1 || e >= len(b.offsets) {
			in.Ends = append(in.Ends, end)
			break
		}
		in.Ends = append(in.Ends, b.offsets[e])
	}
	return in
}

// clip makes the spans of a replayed intent end at end, where the batch
// re-read ends: only a file changed since the intent was recorded ends
// elsewhere, and its last span is then named anew.
func (in *intent) clip(end int64) *intent {
	out := &intent{Fingerprint: in.Fingerprint}
	for _, e := range in.Ends {
		if e >= end {
			break
		}
		out.Ends = append(out.Ends, e)
	}
	out.Ends = append(out.Ends, end)
	return out
}

// segments cuts the events of a batch spanning [start, in.end()), which
// start at offsets, by the spans of in: ends[i] is one past the last event
// of segment i, ids[i] its name. Spans holding no event are left out.
func (in *intent) segments(offsets []int64, start int64) (ends []int, ids []string) {
	spanStart, i := start, 0
	for _, spanEnd := range in.Ends {
		first := i
		for i < len(offsets) && offsets[i] < spanEnd {
			i++
		}
		if i > first {
			ends = append(ends, i)
			ids = append(ids, segmentID(in.Fingerprint, spanStart, spanEnd))
		}
		spanStart = spanEnd
	}
	return ends, ids
}

// handle turns one line into an event of the batch, or a dead letter.
func (t *tailer) handle(ctx context.Context, l line) error {
	if t.skipLine {
		t.skipLine = false
		return nil
	}
	if l.TooLong {
		t.src.metrics.LimitExceeded.WithLabelValues("max_line_bytes").Inc()
		reason := fmt.Sprintf("line of %d bytes exceeds max_line_bytes %d; data is its first %d bytes", l.Size, t.src.maxLine, len(l.Data))
		return t.deadLetter(ctx, l, reason)
	}
	data := bytes.TrimSpace(l.Data)
	if len(data) == 0 {
		return nil
	}
	raw, err := audit.ParseRawDepth(data, t.src.maxDepth)
	if err != nil {
		if errors.Is(err, audit.ErrTooDeep) {
			t.src.metrics.LimitExceeded.WithLabelValues("max_json_depth").Inc()
		}
		return t.deadLetter(ctx, l, err.Error())
	}
	// The reader reuses its buffer: the batch needs its own copy.
	raw.Data = bytes.Clone(raw.Data)
	t.batch = append(t.batch, raw)
	t.offsets = append(t.offsets, l.Offset)
	t.batchBytes += len(raw.Data)
	return nil
}

func (t *tailer) deadLetter(ctx context.Context, l line, reason string) error {
	src := fmt.Sprintf("file:%s:%d", t.name, l.Offset)
	if len(l.Data) > maxDeadLetterBytes {
		reason = fmt.Sprintf("%s; data is its first %d of %d bytes", reason, maxDeadLetterBytes, len(l.Data))
	}
	at := fmt.Sprintf("%s:%d", t.name, l.Number)
	if l.Number == 0 {
		at = fmt.Sprintf("%s@%d", t.name, l.Offset)
	}
	t.log.Warn("dead-lettering line", "at", at, "offset", l.Offset, "bytes", l.Size, "reason", reason)
	data := bytes.Clone(l.Data[:min(len(l.Data), maxDeadLetterBytes)])
	return t.retry(ctx, "dead-letter", func(ctx context.Context) error { return t.pub.DeadLetter(ctx, src, reason, data) })
}

// flush publishes the batch and, once the Publisher has stored it,
// checkpoints the offset after it.
func (t *tailer) flush(ctx context.Context) error {
	if len(t.batch) > 0 || t.replay != nil {
		b, err := t.takeBatch()
		if err != nil {
			return err
		}
		if len(b.events) > 0 {
			if err := t.publish(ctx, b); err != nil {
				return err
			}
		}
	}
	return t.checkpoint()
}

// publish stores a batch, retrying until it is stored or ctx is done.
// Events too large to ever be stored are dead-lettered with their
// beginning: retrying them could never succeed and would stop the log.
func (t *tailer) publish(ctx context.Context, b batch) error {
	deadLetter := func(ctx context.Context, i int, reason string, sample []byte) error {
		l := line{Data: sample, Offset: b.offsets[i], Size: int64(len(b.events[i].Data))}
		return t.deadLetter(ctx, l, reason)
	}
	err := t.retry(ctx, "publish", func(ctx context.Context) error {
		if b.segmented {
			return ingest.StoreSegments(ctx, t.pub.(ingest.SegmentPublisher), b.events, b.ends, b.ids, deadLetter)
		}
		return ingest.Store(ctx, t.pub, b.events, deadLetter)
	})
	if err == nil && t.src.afterStore != nil {
		t.src.afterStore()
	}
	return err
}

// retry calls fn until it succeeds or ctx is done.
func (t *tailer) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	attempts := 1
	err := backoff.Retry(ctx, retryBackoff, fn, backoff.OnRetry(func(err error, attempt int, wait time.Duration) {
		attempts = attempt + 1
		t.log.Warn(what+" failed; retrying", "file", t.name, "attempt", attempt, "retry_in", wait, "err", err)
	}))
	if err != nil {
		return ctx.Err()
	}
	if attempts > 1 {
		t.log.Info(what+" succeeded after retries", "attempts", attempts)
	}
	return nil
}

// takeFingerprint fingerprints the first bytes of the file as soon as
// they have been read, not when their batch is stored: a copytruncate in
// between would otherwise fingerprint the new content, and the copy that
// holds the lines not yet read would no longer be recognised.
func (t *tailer) takeFingerprint() error {
	pos := t.rd.ReadPos()
	if t.fpLen >= fingerprintBytes || pos <= t.fpLen {
		return nil
	}
	n := min(pos, fingerprintBytes)
	fp, err := fingerprint(t.f, n)
	if err != nil {
		return err
	}
	t.fp, t.fpLen = fp, n
	return nil
}

// checkpoint saves the current position if it moved.
func (t *tailer) checkpoint() error { return t.checkpointAt(t.rd.Offset()) }

// checkpointAt saves off, in the file being read, as the position to
// resume from.
func (t *tailer) checkpointAt(off int64) error {
	if len(t.batch) == 0 {
		t.batchStart = off // lines read since the last batch hold no event
	}
	return t.save(off, nil)
}

// save records off as the position to resume from, and in, when not nil,
// as what is being published after it. While data_dir is full nothing is
// recorded and publishing goes on: a restart then re-reads from the last
// checkpoint saved and may cut what followed it differently, storing some
// events twice on AUDIT (alerts and thresholds count each event once
// whatever AUDIT holds) but losing none.
func (t *tailer) save(off int64, in *intent) error {
	if in == nil && !t.saved.intent && t.saved.ok && t.saved.id == t.id && t.saved.offset == off {
		return nil
	}
	if t.ckFull.failures.Failures() > 0 && time.Now().Before(t.ckFull.retryAt) {
		return nil // data_dir full: not yet time to try again
	}
	if err := t.takeFingerprint(); err != nil {
		return err
	}
	ck := &checkpoint{
		Path: t.path, File: t.name, Dev: t.id.Dev, Ino: t.id.Ino, Offset: off,
		Fingerprint: t.fp, FingerprintLen: t.fpLen, SavedAt: time.Now().UTC(), Intent: in,
	}
	if fi, err := t.f.Stat(); err == nil {
		ck.ModAt = fi.ModTime()
	}
	if err := t.store.save(ck); err != nil {
		if !isDiskFull(err) {
			return err
		}
		t.checkpointFailed(err)
		return nil
	}
	if n := t.ckFull.failures.Failures(); n > 0 {
		t.log.Info("checkpoint saved again: data_dir has space", "offset", off, "failed_attempts", n)
		t.ckFull.failures.Reset()
	}
	t.saved.id, t.saved.offset, t.saved.ok, t.saved.intent = t.id, off, true, in != nil
	t.src.metrics.CheckpointOffset.WithLabelValues(t.path).Set(float64(off))
	return nil
}

// checkpointFailed records a checkpoint that could not be saved because
// data_dir is full. Reading goes on: the events are stored, only the
// record of how far is not, and the previous checkpoint stays valid — a
// restart before the next save reads them again, and their MsgIDs make
// JetStream drop the copies.
func (t *tailer) checkpointFailed(err error) {
	first := t.ckFull.failures.Failures() == 0
	delay := t.ckFull.failures.Next()
	if first {
		t.log.Error("cannot save checkpoint: data_dir is full; retrying with backoff (a restart meanwhile re-reads events since the last saved checkpoint)", "err", err)
	} else {
		t.log.Warn("checkpoint still not saved: data_dir is full", "attempt", t.ckFull.failures.Failures(), "retry_in", delay, "err", err)
	}
	t.ckFull.retryAt = time.Now().Add(delay)
}

// state compares the file being read with what the path names now.
func (t *tailer) state() (fileState, error) {
	fi, err := os.Stat(t.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Between rename and create of a rotation, or the log was
		// removed: keep reading what is open until a new file appears.
	case err != nil:
		return stSame, fmt.Errorf("stat: %w", err)
	case idOf(fi) != t.id:
		return stRotated, nil
	}
	cur, err := t.f.Stat()
	if err != nil {
		return stSame, fmt.Errorf("stat %s: %w", t.name, err)
	}
	if cur.Size() < t.rd.ReadPos() {
		return stTruncated, nil
	}
	if t.fpLen > 0 {
		fp, err := fingerprint(t.f, t.fpLen)
		if err != nil {
			return stSame, err
		}
		if fp != t.fp {
			return stTruncated, nil
		}
	}
	return stSame, nil
}

// finish reads a rotated file to its end. The writer has closed it, so a
// line without newline at its end will never be completed.
func (t *tailer) finish(ctx context.Context) error {
	if _, err := t.readAvailable(ctx); err != nil {
		return err
	}
	if l, ok := t.rd.Pending(); ok {
		if err := t.deadLetter(ctx, l, "rotated file ends with an incomplete line"); err != nil {
			return err
		}
	}
	return t.checkpoint()
}

// advance moves from a finished rotated file to the next one: a newer
// backup if several rotations happened since, else the active log.
func (t *tailer) advance() error {
	cur, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", t.name, err)
	}
	for range 10 {
		cands, err := backupsOf(t.path)
		if err != nil {
			return err
		}
		next := nextAfter(cands, t.id, cur.ModTime())
		rotated := rotatedName(cands, t.id, t.name)
		if next == nil {
			t.log.Info("finished rotated file; waiting for the log to reappear", "rotated", rotated)
			t.close()
			return nil
		}
		f, err := os.Open(next.path)
		if err != nil {
			continue // rotated again meanwhile: list again
		}
		fi, err := f.Stat()
		if err != nil || idOf(fi) != next.id {
			f.Close()
			continue
		}
		t.log.Info("finished rotated file", "rotated", rotated, "next", next.path)
		if err := t.use(f, next.path, 0); err != nil {
			return err
		}
		return t.checkpoint()
	}
	return fmt.Errorf("log keeps rotating faster than it can be listed")
}

// rotatedName is the name the file identified by id has now among the
// backups: the name it was opened by is the active log's, which another
// file has taken since. Gone from the folder, it keeps the name it had.
func rotatedName(cands []candidate, id fileID, opened string) string {
	for _, c := range cands {
		if c.id == id && !c.isLog {
			return c.path
		}
	}
	return opened
}

// nextAfter picks the file that follows the one identified by id: the one
// after it in age order, or, when it is gone from the folder, the oldest
// backup not older than it.
func nextAfter(cands []candidate, id fileID, mod time.Time) *candidate {
	for i, c := range cands {
		if c.id == id {
			if i+1 < len(cands) {
				return &cands[i+1]
			}
			return nil
		}
	}
	for i, c := range cands {
		if c.isLog || !c.mod.Before(mod) {
			return &cands[i]
		}
	}
	return nil
}

// truncated handles a file cut shorter in place. With copytruncate the
// lines not yet read are in the copy: they are read from there first.
func (t *tailer) truncated(ctx context.Context) error {
	off := t.rd.Offset()
	if t.fpLen > 0 {
		cands, err := backupsOf(t.path)
		if err != nil {
			return err
		}
		for i := len(cands) - 1; i >= 0; i-- {
			c := cands[i]
			if c.isLog || c.id == t.id || c.size <= off {
				continue
			}
			f, err := os.Open(c.path)
			if err != nil {
				continue
			}
			fp, err := fingerprint(f, t.fpLen)
			if err != nil || fp != t.fp {
				f.Close()
				continue
			}
			t.log.Info("log was copied and truncated; reading the rest from the copy", "copy", c.path, "offset", off)
			if err := t.use(f, c.path, off); err != nil {
				return err
			}
			return t.checkpoint()
		}
	}
	if l, ok := t.rd.Pending(); ok {
		if err := t.deadLetter(ctx, l, "file was truncated before this line was complete"); err != nil {
			return err
		}
	}
	t.log.Warn("log was truncated; reading it from the start", "offset", off)
	f, err := os.Open(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		t.close()
		return nil
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if err := t.use(f, t.path, 0); err != nil {
		return err
	}
	return t.checkpoint()
}
