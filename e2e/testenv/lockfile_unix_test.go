//go:build unix

package testenv

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Lockers that remove the file when done still exclude each other (the
// inode recheck), and the last one leaves nothing behind.
func TestFileLockExcludesAndLeavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.lock")
	var holders, maxHolders, rounds atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				l, err := LockFile(path, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				n := holders.Add(1)
				for {
					m := maxHolders.Load()
					if n <= m || maxHolders.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(100 * time.Microsecond)
				holders.Add(-1)
				rounds.Add(1)
				if err := l.Unlock(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := maxHolders.Load(); m != 1 {
		t.Fatalf("%d lockers held the lock at once", m)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("lock file left behind: %v", err)
	}
	t.Logf("%d rounds", rounds.Load())
}

// Once the holder removes the file and releases, a waiter gets the lock on
// the file the path names, and a newcomer waits for it.
func TestFileLockWaiterOnRemovedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.lock")
	a, err := LockFile(path, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *FileLock)
	go func() {
		b, err := LockFile(path, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	time.Sleep(120 * time.Millisecond) // b has opened the file and waits
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if same, err := namesFile(path, b.f); err != nil || !same {
		t.Fatalf("the waiter holds a file the path does not name (%v)", err)
	}
	if _, err := LockFile(path, 200*time.Millisecond); err == nil {
		t.Fatal("a newcomer got the lock while the waiter holds it")
	}
	b.Unlock()
}

func TestRemoveIfEmpty(t *testing.T) {
	base := t.TempDir()
	empty, full := filepath.Join(base, "empty"), filepath.Join(base, "full")
	os.Mkdir(empty, 0o700)
	os.Mkdir(full, 0o700)
	os.WriteFile(filepath.Join(full, "journal-1.json"), []byte("{}"), 0o600)
	for _, d := range []string{empty, full, filepath.Join(base, "missing")} {
		if err := RemoveIfEmpty(d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Fatal("the empty dir stays")
	}
	if _, err := os.Stat(filepath.Join(full, "journal-1.json")); err != nil {
		t.Fatal("a dir with a journal was removed")
	}
}
