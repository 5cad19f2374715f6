//go:build unix

package trust

import (
	"io/fs"
	"os"
	"syscall"
)

// chownLike gives path the owner and group of ref, so that a file edgecr
// writes under sudo into a user's directory (~/.docker on macOS) stays the
// user's. It only tries when the owner differs, so unprivileged runs against a
// temp root never need the privilege.
func chownLike(path string, ref fs.FileInfo) error {
	want, ok := ref.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	have, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (have.Uid == want.Uid && have.Gid == want.Gid) {
		return nil
	}
	return os.Lchown(path, int(want.Uid), int(want.Gid))
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
