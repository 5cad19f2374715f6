//go:build windows

package credhelper

import (
	"io/fs"
	"os"
)

// fchown is a no-op on Windows: a new file takes the ACL of its directory,
// which under the user's profile already grants the user access.
func fchown(*os.File, *ownerID) error { return nil }

// lchown is a no-op on Windows, see fchown.
func lchown(string, *ownerID) error { return nil }

// giveNewFile is a no-op on Windows, see fchown.
func giveNewFile(*os.File, *ownerID) error { return nil }

// openNoFollow is os.OpenFile on Windows.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag, perm)
}

// fileOwner reports no owner on Windows: owners are not checked there.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

// keepOwner is a no-op on Windows, see fchown.
func keepOwner(fs.FileInfo) *ownerID { return nil }
