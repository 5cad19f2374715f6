package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerLock is the data dir's owner lock: `edgecrd serve` holds it for the
// life of the process and `edgecrd init` while it writes, so that one data
// dir has one serve and nothing rewrites a running device's settings behind
// its back. The file holds "PID COMMAND" of the holder, for the error the
// next process prints; it is never removed (removing a locked file lets a
// third process lock a new inode while the second still waits on the old).
const ownerLock = ".owner.lock"

// ErrInUse is returned (wrapped in an *InUseError) when another process
// holds a data dir.
var ErrInUse = errors.New("data dir in use")

// InUseError names the process that holds a data dir.
type InUseError struct {
	Dir     string
	PID     int    // 0 when the holder has not written it yet
	Command string // serve or init
}

func (e *InUseError) Error() string {
	who := "another edgecrd process"
	if e.Command != "" {
		who = "edgecrd " + e.Command
	}
	if e.PID > 0 {
		return fmt.Sprintf("data dir %s is in use by %s (pid %d)", e.Dir, who, e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by %s (pid not known yet)", e.Dir, who)
}

func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// DirLock is a held owner lock of a data dir.
type DirLock struct {
	f      *os.File
	unlock func()
}

// LockDataDir takes the owner lock of dir (created if absent) for command
// without waiting: when another process holds it, the error is an
// *InUseError naming that process.
func LockDataDir(dir, command string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, ownerLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	unlock, ok, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		f.Close()
		e := &InUseError{Dir: dir}
		if b, err := os.ReadFile(path); err == nil {
			e.PID, e.Command = parseOwner(string(b))
		}
		return nil, e
	}
	line := []byte(strconv.Itoa(os.Getpid()) + " " + command + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(line, 0)
	}
	if err != nil {
		unlock()
		f.Close()
		return nil, fmt.Errorf("writing lock %s: %w", path, err)
	}
	return &DirLock{f: f, unlock: unlock}, nil
}

// HoldDataDir takes the owner lock of an existing data dir like
// LockDataDir, but writes nothing into the lock file (it creates it, empty,
// only when absent): for `edgecrd migrate`, which keeps serve and init off
// the data dir while it copies it and must leave every byte of it as it was.
func HoldDataDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, ownerLock)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	unlock, ok, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		f.Close()
		e := &InUseError{Dir: dir}
		if b, err := os.ReadFile(path); err == nil {
			e.PID, e.Command = parseOwner(string(b))
		}
		return nil, e
	}
	return &DirLock{f: f, unlock: unlock}, nil
}

// Unlock releases the lock; the file stays.
func (l *DirLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.unlock()
	l.f.Close()
	l.f = nil
}

// parseOwner reads "PID COMMAND"; anything else is (0, "").
func parseOwner(s string) (int, string) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, ""
	}
	switch f[1] {
	case "serve", "init", "restore":
		return pid, f[1]
	}
	return 0, ""
}
