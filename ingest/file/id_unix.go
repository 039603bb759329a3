//go:build unix

package file

import (
	"os"
	"syscall"
)

// fileID identifies a file independently of its name, which rotation
// changes.
type fileID struct{ Dev, Ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)} //nolint:unconvert // Dev is int32 on some platforms
}
