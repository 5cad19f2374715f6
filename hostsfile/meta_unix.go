//go:build unix

package hostsfile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// keepOwner gives tmp the owner and group of the file info describes.
func keepOwner(tmp *os.File, info fs.FileInfo) error {
	want, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	ti, err := tmp.Stat()
	if err != nil {
		return err
	}
	if have, ok := ti.Sys().(*syscall.Stat_t); ok && have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return tmp.Chown(int(want.Uid), int(want.Gid))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// inPlaceHelps reports whether err, from the atomic write, is one that
// writing the file in place avoids: the file is a mount point (rename gives
// EBUSY, or EXDEV across the mount), its directory is read-only or not
// writable for us, or we may not give a new file the old one's owner or
// SELinux label (writing in place keeps both).
func inPlaceHelps(err error) bool {
	for _, e := range []error{unix.EBUSY, unix.EXDEV, unix.EROFS, unix.EACCES, unix.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
