//go:build unix

package credhelper

import (
	"io/fs"
	"os"
	"syscall"
)

// chown gives path to o; a nil o leaves it to the process's user.
func chown(path string, o *ownerID) error {
	if o == nil {
		return nil
	}
	return os.Chown(path, o.UID, o.GID)
}

// keepOwner returns the owner of an existing file that a rewrite must
// keep, or nil when there is nothing to do: only root can give a file away,
// and a file written by anyone else is theirs already.
func keepOwner(fi fs.FileInfo) *ownerID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return &ownerID{UID: int(st.Uid), GID: int(st.Gid)}
}
