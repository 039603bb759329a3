//go:build !unix

package file

import "os"

// fileID identifies a file independently of its name. Without inodes the
// identity is unknown and rotation is detected by size and fingerprint only.
type fileID struct{ Dev, Ino uint64 }

func idOf(os.FileInfo) fileID { return fileID{} }
