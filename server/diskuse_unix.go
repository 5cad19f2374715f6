//go:build unix

package server

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space fi takes: its allocated blocks, which for a
// directory or a small file are far more than its size.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return roundBlock(fi.Size())
}
