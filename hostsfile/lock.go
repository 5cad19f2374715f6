package hostsfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive lock on the file at path, creating it if
// needed, and returns the function that releases it. On a read-only file
// system, where path cannot be created, it locks the file at fallback
// instead (see File.update). While another process
// or goroutine holds the lock it retries until ctx is done. The lock is an
// OS lock on an open file (flock on unix, LockFileEx on Windows), so the OS
// releases it when a holder dies.
func lockFile(ctx context.Context, path, fallback string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, syscall.EROFS) {
		path = fallback
		f, err = os.Open(fallback)
	}
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	delay := time.Millisecond
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if ok {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	return func() error {
		return errors.Join(unlockFile(f), f.Close())
	}, nil
}
