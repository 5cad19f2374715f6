//go:build windows

package server

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// tryLock takes an exclusive lock on f without waiting; ok is false when
// another handle holds it. Windows locks are mandatory, so the lock covers
// one byte far past the PID the file holds, which others can still read.
func tryLock(f *os.File) (unlock func(), ok bool, err error) {
	h := windows.Handle(f.Fd())
	ol := &windows.Overlapped{OffsetHigh: 1} // byte 4 GiB: beyond any content
	err = windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return func() { _ = windows.UnlockFileEx(h, 0, 1, 0, ol) }, true, nil
}
