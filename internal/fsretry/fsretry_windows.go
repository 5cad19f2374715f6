package fsretry

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// Rename is os.Rename (MoveFileEx with MOVEFILE_REPLACE_EXISTING), retried
// for up to Budget while the target is in use. A read-only target (attrib
// +r) is made writable for the rename and the new file made read-only, as
// the user had it.
func Rename(oldpath, newpath string) error {
	readOnly := false
	if fi, err := os.Stat(newpath); err == nil && fi.Mode().Perm()&0o200 == 0 {
		readOnly = true
		if err := os.Chmod(newpath, 0o666); err != nil {
			return err
		}
	}
	err := retry(func() error { return os.Rename(oldpath, newpath) }, inUse, time.Sleep, Budget, newpath)
	if readOnly {
		_ = os.Chmod(newpath, 0o444) // the new file on success, the old one on failure
	}
	return err
}

// inUse reports the errors another program's open handle causes.
func inUse(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) ||
		errors.Is(err, windows.ERROR_LOCK_VIOLATION) ||
		errors.Is(err, windows.ERROR_ACCESS_DENIED)
}
