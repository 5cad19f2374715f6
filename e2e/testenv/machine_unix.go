//go:build unix

package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// LockMachine takes MachineLock until t ends; the last holder removes the
// file (see FileLock).
func LockMachine(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(MachineLock), 0o755); err != nil {
		t.Fatalf("creating %s: %v", filepath.Dir(MachineLock), err)
	}
	l, err := LockFile(MachineLock, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Unlock(); err != nil {
			t.Errorf("removing %s: %v", MachineLock, err)
		}
	})
}
