//go:build linux

package server

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// writebackChunk is how much of an upload is written into the page cache
// between two early syncs of its file. On the benchmark machine, writing
// 512 MiB at a network's pace (350 MB/s, 64 KiB writes) and then fsyncing
// it spent 350–440 ms in the fsync after the last byte. With an fdatasync
// started every 8, 16, 32 or 64 MiB meanwhile the final one took under
// 1 ms, the last early sync 9, 20, 30 or 55 ms, and each sync cost about
// 1.5 ms of system time (8 MiB: 307–328 ms per 512 MiB against 174–283
// without): 32 MiB keeps both small (docs/benchmarks.md).
const writebackChunk = 32 << 20

// writeback makes an upload's data durable while the rest of it is still
// arriving, so that the fsync that ends the PATCH (the filesystem
// driver's, on Close and Commit) finds next to nothing left to do instead
// of writing the whole upload, and flushing the disk's cache, while the
// client waits: a push spends the time its bytes take on the network
// writing the earlier ones out. Left to itself the kernel would not even
// start before dirty_background_ratio of memory is dirty, gigabytes on a
// device with a few GiB free.
//
// It calls fdatasync on a read-only descriptor of its own, from a
// goroutine, at most one at a time: the call waits for the disk, and the
// upload's writes must not. Starting the writeback alone
// (sync_file_range(SYNC_FILE_RANGE_WRITE)) was not enough there: the
// final fsync still took 323–343 ms, the disk's cache flush (on this VM
// the host writing its copy) being most of its cost. Nothing changes in
// what is reported durable when: the filesystem driver's fsync still runs
// and still waits for everything, and a write error met by an early sync
// is reported by that fsync too (the kernel keeps it for every descriptor
// opened before it, errseq). The pages stay in the page cache (no
// drop-behind: the pull that usually follows a push reads them there).
type writeback struct {
	f       *os.File
	pending int64 // written since the last start
	busy    atomic.Bool
	wg      sync.WaitGroup
	starts  int // syncs started, for the tests
}

// openWriteback returns the early writeback of the file at name, or nil
// when it cannot be opened (the fsync then writes everything, as without).
func openWriteback(name string) *writeback {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	return &writeback{f: f}
}

// wrote counts n bytes written to the file and starts an fdatasync once
// writebackChunk have come since the last start and that one has ended.
func (b *writeback) wrote(n int) {
	if b == nil {
		return
	}
	b.pending += int64(n)
	if b.pending < writebackChunk || !b.busy.CompareAndSwap(false, true) {
		return
	}
	b.pending = 0
	b.starts++
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.busy.Store(false)
		rc, err := b.f.SyscallConn()
		if err != nil {
			return
		}
		// Its error, if any, is the final fsync's to report (above).
		_ = rc.Control(func(fd uintptr) { _ = unix.Fdatasync(int(fd)) })
	}()
}

// close waits for a started sync and closes the descriptor.
func (b *writeback) close() {
	if b == nil {
		return
	}
	b.wg.Wait()
	b.f.Close()
}
