//go:build unix

package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// LockMachine takes MachineLock until t ends.
func LockMachine(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(MachineLock), 0o755); err != nil {
		t.Fatalf("creating %s: %v", filepath.Dir(MachineLock), err)
	}
	f, err := os.OpenFile(MachineLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("opening %s: %v", MachineLock, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("locking %s: %v", MachineLock, err)
	}
	t.Cleanup(func() { f.Close() })
}
