package file

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fingerprintBytes is how much of the start of a file identifies it besides
// its inode: inode numbers are reused as soon as a rotated backup is
// deleted, and the first kilobyte of an audit log holds an auditID.
const fingerprintBytes = 1024

// checkpoint is where reading of one log stopped: the file (by identity,
// not by name, since rotation renames it) and the offset after the last
// line whose events are stored.
type checkpoint struct {
	Path   string    `json:"path"` // the configured (active) path
	File   string    `json:"file"` // the name the file had when saved
	Dev    uint64    `json:"dev"`
	Ino    uint64    `json:"ino"`
	Offset int64     `json:"offset"`
	ModAt  time.Time `json:"modTime"` // the file's mtime when saved
	// Fingerprint is the SHA-256 of the first FingerprintLen bytes.
	Fingerprint    string    `json:"fingerprint"`
	FingerprintLen int64     `json:"fingerprintLen"`
	SavedAt        time.Time `json:"savedAt"`
	// Intent is what is being published after Offset, recorded before it
	// is: a restart cuts and names those events the same way again.
	Intent *intent `json:"intent,omitempty"`
}

// intent is the write-ahead record of a batch being published: its
// segments span the file from the checkpoint's Offset to the last of Ends,
// segment i ending at Ends[i] (and starting where the one before ended).
// Segment MsgIDs derive from the span and the file's fingerprint, which
// is recorded as it was: the fingerprint of a file that has grown past
// its first kilobyte since would name them differently.
type intent struct {
	Fingerprint string  `json:"fingerprint"`
	Ends        []int64 `json:"ends"`
}

// end is the offset after the last segment.
func (in *intent) end() int64 { return in.Ends[len(in.Ends)-1] }

// segmentID names the segment spanning [start, end) of the file with
// fingerprint fp: the same lines always give the same name.
func segmentID(fp string, start, end int64) string {
	return fmt.Sprintf("file/%.32s/%d-%d", fp, start, end)
}

func (c *checkpoint) id() fileID { return fileID{Dev: c.Dev, Ino: c.Ino} }

// checkpointStore keeps one checkpoint file.
type checkpointStore struct {
	path string
}

func newCheckpointStore(dir, logPath string) checkpointStore {
	sum := sha256.Sum256([]byte(logPath))
	name := sanitize(filepath.Base(logPath)) + "-" + hex.EncodeToString(sum[:8]) + ".json"
	return checkpointStore{path: filepath.Join(dir, name)}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}

// load returns the saved checkpoint, or nil when there is none.
func (s checkpointStore) load() (*checkpoint, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var c checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("checkpoint %s is corrupt (remove it to start over per start_at): %w", s.path, err)
	}
	if c.Intent != nil && !c.Intent.valid(c.Offset) {
		return nil, fmt.Errorf("checkpoint %s is corrupt (remove it to start over per start_at): intent ends %v do not follow offset %d", s.path, c.Intent.Ends, c.Offset)
	}
	if c.Offset < 0 || c.FingerprintLen < 0 || c.FingerprintLen > fingerprintBytes {
		return nil, fmt.Errorf("checkpoint %s is corrupt (remove it to start over per start_at): offset %d, fingerprintLen %d", s.path, c.Offset, c.FingerprintLen)
	}
	return &c, nil
}

// valid reports whether the segments' ends rise strictly after offset.
func (in *intent) valid(offset int64) bool {
	if len(in.Ends) == 0 || in.Fingerprint == "" {
		return false
	}
	prev := offset
	for _, e := range in.Ends {
		if e <= prev {
			return false
		}
		prev = e
	}
	return true
}

// save replaces the checkpoint atomically and durably: a crash leaves
// either the old or the new one, never a torn file.
func (s checkpointStore) save(c *checkpoint) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync checkpoint %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("replace checkpoint: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync checkpoint dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync checkpoint dir %s: %w", dir, err)
	}
	return nil
}

// fingerprint hashes the first n bytes of f.
func fingerprint(f *os.File, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n)); err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// matches reports whether f is the file c was saved for: same identity,
// same first bytes, and at least as long as the offset.
func (c *checkpoint) matches(f *os.File) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if idOf(fi) != c.id() || fi.Size() < c.FingerprintLen {
		return false, nil
	}
	buf := make([]byte, c.FingerprintLen)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	sum := sha256.Sum256(buf)
	return bytes.Equal([]byte(hex.EncodeToString(sum[:])), []byte(c.Fingerprint)), nil
}

// isDiskFull reports an error of a file system with no space (or quota)
// left: a condition that passes once space is freed.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
