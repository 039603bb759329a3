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
	if c.Offset < 0 || c.FingerprintLen < 0 || c.FingerprintLen > fingerprintBytes {
		return nil, fmt.Errorf("checkpoint %s is corrupt (remove it to start over per start_at): offset %d, fingerprintLen %d", s.path, c.Offset, c.FingerprintLen)
	}
	return &c, nil
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
