//go:build unix

package testenv

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FileLock is an exclusive flock on a lock file that each holder removes
// when it is done, so that no lock file stays behind after the last test.
//
// Removing a lock file that others may be waiting on is a classic race: a
// waiter that opened the file before it was removed gets the lock of a
// file no longer in the directory, while a newcomer creates a new file and
// locks that one, and both run. So a locker checks, once it holds the
// flock, that the path still names the file it locked (same device and
// inode), and starts over when it does not; and the holder removes the
// file before it releases the lock, never after.
type FileLock struct {
	f    *os.File
	path string
}

// LockFile takes path's lock, creating the file if absent, trying every
// 50 ms until timeout; the holder's pid is written into the file.
func LockFile(path string, timeout time.Duration) (*FileLock, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening lock %s: %w", path, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			if same, serr := namesFile(path, f); serr != nil {
				f.Close()
				return nil, serr
			} else if same {
				f.Truncate(0)
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
				return &FileLock{f: f, path: path}, nil
			}
			// Removed by its last holder after we opened it: start over.
			f.Close()
			continue
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR):
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		f.Close()
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("locking %s: held for %s by pid %s", path, timeout, strings.TrimSpace(string(holder)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// namesFile reports whether path is the file f has open.
func namesFile(path string, f *os.File) (bool, error) {
	var byPath, byFD unix.Stat_t
	if err := unix.Stat(path, &byPath); errors.Is(err, syscall.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("checking lock %s: %w", path, err)
	}
	if err := unix.Fstat(int(f.Fd()), &byFD); err != nil {
		return false, fmt.Errorf("checking lock %s: %w", path, err)
	}
	return byPath.Dev == byFD.Dev && byPath.Ino == byFD.Ino, nil
}

// Unlock removes the lock file, then releases the lock: a process waiting
// on it then finds the path gone (or a new file) and locks again.
func (l *FileLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	l.f.Close()
	l.f = nil
	return err
}

// RemoveIfEmpty removes dir when it is empty; a missing dir, or one that
// still holds something (a journal a failed restore left for the next
// run), is no error.
func RemoveIfEmpty(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return fmt.Errorf("removing %s: %w", dir, err)
}
