//go:build windows

package credhelper

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// readersNeedLock is true on Windows: a rename over a file that a reader
// holds open fails, so readers take the lock shared and writers exclusive.
const readersNeedLock = true

// tryLock takes LockFileEx on the first byte of f without blocking; false
// means another process holds it.
func tryLock(f *os.File, exclusive bool) (bool, error) {
	flags := uint32(windows.LOCKFILE_FAIL_IMMEDIATELY)
	if exclusive {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	err := windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, 1, 0, new(windows.Overlapped))
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return false, nil
	}
	return err == nil, err
}

func unlock(f *os.File) error {
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, new(windows.Overlapped))
}
