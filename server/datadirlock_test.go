package server

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDataDir(dir, "serve")
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDataDir(dir, "init")
	var e *InUseError
	if !errors.As(err, &e) || !errors.Is(err, ErrInUse) || e.PID != os.Getpid() || e.Command != "serve" {
		t.Fatalf("second lock: %v (%+v), want in use by serve pid %d", err, e, os.Getpid())
	}
	l.Unlock()
	l.Unlock() // idempotent
	l2, err := LockDataDir(dir, "init")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	defer l2.Unlock()
	if b, _ := os.ReadFile(filepath.Join(dir, ownerLock)); len(b) == 0 || string(b[len(b)-5:]) != "init\n" {
		t.Fatalf("lock file %q does not name the holder", b)
	}
}

// HoldDataDir (migrate) keeps serve and init off a data dir like
// LockDataDir, is refused next to them, and leaves the lock file's bytes
// and mtime as they were.
func TestHoldDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDataDir(dir, "serve")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HoldDataDir(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("hold next to serve: %v, want in use", err)
	}
	l.Unlock()
	path := filepath.Join(dir, ownerLock)
	before, _ := os.ReadFile(path)
	fi1, _ := os.Stat(path)
	h, err := HoldDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(dir, "serve"); !errors.Is(err, ErrInUse) {
		t.Fatalf("serve while held: %v, want in use", err)
	}
	h.Unlock()
	after, _ := os.ReadFile(path)
	fi2, _ := os.Stat(path)
	if string(after) != string(before) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Fatalf("the lock file changed: %q -> %q", before, after)
	}
	if _, err := HoldDataDir(filepath.Join(dir, "none")); err == nil {
		t.Fatal("held a data dir that does not exist")
	}
}

func TestParseOwner(t *testing.T) {
	for in, want := range map[string]int{"12 serve\n": 12, "12 init": 12, "": 0, "12": 0, "-1 serve": 0, "x serve": 0, "12 rm": 0, "12 serve extra": 0} {
		if got, _ := parseOwner(in); got != want {
			t.Errorf("parseOwner(%q) = %d, want %d", in, got, want)
		}
	}
	if got := (&InUseError{Dir: "d"}).Error(); got != "data dir d is in use by another edgecrd process (pid not known yet)" {
		t.Errorf("unknown holder: %s", got)
	}
}
