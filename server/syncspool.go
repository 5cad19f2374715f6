package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/edgecr/edgecr/server/mirror"
)

// spoolDir (in the data dir) holds the blobs pull-throughs are fetching.
const spoolDir = ".pullthrough-spool"

// spoolTempPrefix names a bucket replica's spool under the system's
// temporary directory (it has no data dir): one directory per process,
// "<prefix><random>", holding spoolLock while the process lives.
const (
	spoolTempPrefix = "edgecrd-pullthrough-spool-"
	spoolLock       = ".lock"
)

// openSpool makes the pull-through spool and removes what a process that
// died left in it: before serving, no transfer of this process can be
// following those files. In a data dir, `edgecrd serve` holds the owner
// lock, so the spool's files are this process's alone. A bucket replica
// has no data dir: its spool is a directory of its own in the system's
// temporary directory (TMPDIR: give it one on disk, not a tmpfs, for big
// blobs), locked while it lives; those of replicas that died, whose locks
// nobody holds, are removed. close removes a replica's directory at exit.
func openSpool(st *State, log *slog.Logger) (dir string, close func(), err error) {
	if st.Dir != "" {
		dir = filepath.Join(st.Dir, spoolDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", nil, fmt.Errorf("creating the pull-through spool %s: %w", dir, err)
		}
		n, b := clearSpool(dir)
		logCleared(log, dir, n, b)
		return dir, func() {}, nil
	}
	tmp := os.TempDir()
	ents, _ := os.ReadDir(tmp)
	var n int
	var b int64
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), spoolTempPrefix) {
			continue
		}
		d := filepath.Join(tmp, e.Name())
		unlock, ok, err := tryLockFile(filepath.Join(d, spoolLock))
		if err != nil || !ok {
			continue // a live replica's (or not ours to judge)
		}
		fn, fb := clearSpool(d)
		unlock()
		if os.RemoveAll(d) == nil {
			n, b = n+fn, b+fb
		}
	}
	logCleared(log, filepath.Join(tmp, spoolTempPrefix+"*"), n, b)
	dir, err = os.MkdirTemp(tmp, spoolTempPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("creating the pull-through spool in %s: %w", tmp, err)
	}
	unlock, ok, err := tryLockFile(filepath.Join(dir, spoolLock))
	if err != nil || !ok {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("locking the pull-through spool %s: %v", dir, err)
	}
	return dir, func() { unlock(); os.RemoveAll(dir) }, nil
}

// clearSpool removes the spool files in dir (its lock stays), counting
// them and their bytes.
func clearSpool(dir string) (n int, bytes int64) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || e.Name() == spoolLock {
			continue
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			n, bytes = n+1, bytes+fi.Size()
		}
	}
	return n, bytes
}

func logCleared(log *slog.Logger, where string, n int, b int64) {
	if n > 0 {
		log.Info("removed pull-through spool files a previous process left", "spool", where, "files", n, "bytes", b)
	}
}

// spoolKeepFree is the share of the spool's filesystem pull-throughs
// leave free (1/spoolKeepFree): the spool never takes the last 5 %.
const spoolKeepFree = 20

// spoolRoom is what bounds the spool (mirror.Destination.Reserve): the
// storage quota, when there is one, counts every spooled blob (the
// spool and the copy in storage both take its size until the spool file
// is removed); and whatever the quota, a blob is spooled only when its
// bytes still to arrive, with those of the transfers under way, leave
// 5 % of the spool's filesystem free.
type spoolRoom struct {
	dir   string
	usage *usage // nil: no storage quota to count against
	space func(dir string) (free, total int64, err error)

	mu       sync.Mutex
	reserved int64 // sizes of the spool files under way
}

func (s *spoolRoom) reserve(what string, n int64) (func(), error) {
	if s.usage != nil && s.usage.quota > 0 {
		if !s.usage.reserve(n) {
			used := s.usage.used()
			return nil, fmt.Errorf("%w: storage quota full: %s of %s used (%d of %d bytes); the pull-through of %s needs %s more. Delete images and run garbage collection to free space",
				mirror.ErrNoRoom, FormatSize(used), FormatSize(s.usage.quota), used, s.usage.quota, what, FormatSize(n))
		}
	}
	unquota := func() {
		if s.usage != nil && s.usage.quota > 0 {
			s.usage.release(n)
		}
	}
	if err := s.disk(what, n); err != nil {
		unquota()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			unquota()
			s.mu.Lock()
			s.reserved -= n
			s.mu.Unlock()
		})
	}, nil
}

// disk counts n against the spool's filesystem.
func (s *spoolRoom) disk(what string, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	free, total, err := s.space(s.dir)
	if err != nil {
		s.reserved += n // not known: not bounded
		return nil
	}
	// What the transfers under way will still write: their sizes less
	// what their files hold (already out of free).
	var written int64
	if ents, err := os.ReadDir(s.dir); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				written += fi.Size()
			}
		}
	}
	coming := max(s.reserved-written, 0)
	if avail := free - total/spoolKeepFree - coming; n > avail {
		return fmt.Errorf("%w: the pull-through spool %s has %s free, %s of it promised to fetches under way, and keeps %s (1/%d of its disk) free; %s needs %s",
			mirror.ErrNoRoom, s.dir, FormatSize(free), FormatSize(coming), FormatSize(total/spoolKeepFree), spoolKeepFree, what, FormatSize(n))
	}
	s.reserved += n
	return nil
}
