package server

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeback starts the kernel's writeback of a file being written, a chunk
// at a time, while the upload is still coming in: sync_file_range with
// SYNC_FILE_RANGE_WRITE queues the dirty pages for the disk and returns.
// Without it the pages of a 512 MiB PATCH stay dirty until the fsync at
// its end, which then writes all of them while the client waits. It is
// only a head start: durability still comes from that fsync (the
// filesystem driver's Close and Commit), and an error here is left for
// the fsync to report.
//
// It works through a descriptor of its own (read-only: writeback concerns
// the file's pages, not the descriptor), so the filesystem driver's
// writer, and any driver a test puts between, stay as they are.
type writeback struct {
	f    *os.File
	next int64 // writeback started up to here
}

// startWriteback opens path for the writeback of what is written past
// offset; nil (no writeback) if it cannot.
func startWriteback(path string, offset int64) *writeback {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return &writeback{f: f, next: offset - offset%writebackChunk}
}

// wrote is told the file's size after a write (what the driver buffers
// is counted but not written yet: those pages are simply not dirty, and
// the next call or the fsync takes them).
func (w *writeback) wrote(size int64) {
	if w == nil || w.f == nil || size-w.next < writebackChunk {
		return
	}
	end := size - size%writebackChunk
	_ = unix.SyncFileRange(int(w.f.Fd()), w.next, end-w.next, unix.SYNC_FILE_RANGE_WRITE)
	w.next = end
}

func (w *writeback) close() {
	if w != nil && w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
