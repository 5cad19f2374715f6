//go:build unix

package credhelper

import (
	"io/fs"
	"os"
	"syscall"
)

// fchown gives the open file f to o; a nil o leaves it to the process's
// user. Through the descriptor, so that nothing put at f's path since it
// was opened is given away instead.
func fchown(f *os.File, o *ownerID) error {
	if o == nil {
		return nil
	}
	return f.Chown(o.UID, o.GID)
}

// lchown gives path itself, never what a symbolic link put there names, to
// o; a nil o leaves it as it is.
func lchown(path string, o *ownerID) error {
	if o == nil {
		return nil
	}
	return os.Lchown(path, o.UID, o.GID)
}

// giveNewFile gives f to o if this process made it: a regular file owned by
// this process's user with no other name (a hard link the user made to a
// file of root's must not change hands).
func giveNewFile(f *os.File, o *ownerID) error {
	if o == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() || st.Nlink != 1 || int(st.Uid) != os.Geteuid() || int(st.Uid) == o.UID {
		return nil
	}
	return f.Chown(o.UID, o.GID)
}

// openNoFollow is os.OpenFile that fails, rather than follows, when the last
// component of path is a symbolic link.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
}

// fileOwner returns the uid that owns fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
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
