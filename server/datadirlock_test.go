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
