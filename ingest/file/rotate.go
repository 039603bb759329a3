package file

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// lumberjackStamp is the timestamp kube-apiserver's log rotation (lumberjack)
// puts between the name and the extension of a backup:
// audit.log -> audit-2026-03-04T10-00-00.000.log.
const lumberjackStamp = `-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}`

var (
	lumberjackBackup = regexp.MustCompile(lumberjackStamp + `(\.[^.]*)?$`)
	numberedBackup   = regexp.MustCompile(`\.\d+$`)
)

// isBackupName reports whether a file name looks like a rotated backup, so
// that a glob such as /var/log/audit/*.log follows only active logs.
func isBackupName(name string) bool {
	return lumberjackBackup.MatchString(name) || numberedBackup.MatchString(name) || strings.HasSuffix(name, ".gz")
}

// candidate is a file that may hold a log's lines: a rotated backup or the
// active file.
type candidate struct {
	path  string
	id    fileID
	mod   time.Time
	size  int64
	isLog bool // the active file
}

// backupsOf lists the rotated backups of the active log at path, oldest
// first, followed by the active file itself when it exists. Compressed
// backups are skipped: they cannot be read at an offset.
func backupsOf(path string) ([]candidate, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	stamped := regexp.MustCompile(`^` + regexp.QuoteMeta(stem) + lumberjackStamp + regexp.QuoteMeta(ext) + `$`)
	numbered := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `\.\d+$`)

	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list rotated backups of %s: %w", path, err)
	}
	var out []candidate
	var active *candidate
	for _, e := range entries {
		name := e.Name()
		isActive := name == base
		if !isActive && !stamped.MatchString(name) && !numbered.MatchString(name) {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // rotated away or deleted since listed
		}
		c := candidate{path: p, id: idOf(fi), mod: fi.ModTime(), size: fi.Size(), isLog: isActive}
		if isActive {
			active = &c
			continue
		}
		out = append(out, c)
	}
	// Backups stop growing when rotated, so their mtimes order them; the
	// name breaks ties on coarse clocks (lumberjack's stamps sort in time).
	slices.SortFunc(out, func(a, b candidate) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return cmp.Compare(a.path, b.path)
	})
	if active != nil {
		out = append(out, *active)
	}
	return out, nil
}
