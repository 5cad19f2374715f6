//go:build unix

package credhelper

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// readersNeedLock is false on unix: rename(2) replaces the file atomically
// even while a reader has the old one open, so `get` never waits and works
// on a read-only mount.
const readersNeedLock = false

// tryLock takes flock(2) on f without blocking; false means another
// process holds it.
func tryLock(f *os.File, exclusive bool) (bool, error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

func unlock(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
