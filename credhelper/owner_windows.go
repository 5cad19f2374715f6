//go:build windows

package credhelper

import "io/fs"

// chown is a no-op on Windows: a new file takes the ACL of its directory,
// which under the user's profile already grants the user access.
func chown(string, *ownerID) error { return nil }

// keepOwner is a no-op on Windows, see chown.
func keepOwner(fs.FileInfo) *ownerID { return nil }
