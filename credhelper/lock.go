package credhelper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// errLockTimeout is wrapped when another process holds a lock for longer
// than the configured timeout.
var errLockTimeout = errors.New("timed out waiting for another edgecr process")

// lockPollInterval is how often a waiting process retries the lock.
const lockPollInterval = 5 * time.Millisecond

// lockPath is the lock file that guards path. A sidecar and not path itself,
// because the atomic rename replaces path's inode under a lock held on it.
func lockPath(path string) string { return path + ".lock" }

// lockForWrite takes the exclusive lock guarding path, creating the lock
// file (owned by owner) if needed, and returns its release function.
func lockForWrite(path string, timeout time.Duration, owner *ownerID) (func(), error) {
	lp := lockPath(path)
	// Never through a symbolic link: under sudo the directory is the
	// user's, and root must not open (let alone give away) what they
	// point it at.
	f, err := openNoFollow(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", lp, err)
	}
	if err := giveNewFile(f, owner); err != nil {
		f.Close()
		return nil, fmt.Errorf("setting owner of %s: %w", lp, err)
	}
	return waitLock(f, true, timeout)
}

// lockForRead takes the lock guarding path shared, where the OS needs it
// (readersNeedLock). It never creates directories; when the lock file
// cannot be opened the read goes ahead without it, so that a read-only
// credentials directory (a mounted secret) still works.
func lockForRead(path string, timeout time.Duration) (func(), error) {
	if !readersNeedLock {
		return func() {}, nil
	}
	f, err := openNoFollow(lockPath(path), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", lockPath(path), err)
	}
	return waitLock(f, false, timeout)
}

// waitLock retries tryLock until it succeeds or timeout passes. It owns f:
// f is closed on failure and by the returned release function.
func waitLock(f *os.File, exclusive bool, timeout time.Duration) (func(), error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := tryLock(f, exclusive)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if ok {
			return func() {
				_ = unlock(f)
				f.Close()
			}, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w after %s", f.Name(), errLockTimeout, timeout)
		}
		time.Sleep(lockPollInterval)
	}
}
