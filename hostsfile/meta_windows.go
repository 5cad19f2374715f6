package hostsfile

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// keepOwner does nothing on Windows. The new file gets the directory's
// inheritable ACL; ACL entries set on the hosts file itself are not copied.
func keepOwner(*os.File, fs.FileInfo) error { return nil }

// syncDir does nothing on Windows, which cannot open a directory for
// syncing; MoveFileEx's replacement is durable once it returns.
func syncDir(string) error { return nil }

// inPlaceHelps reports whether err, from the atomic write, is one that
// writing the file in place avoids: the rename is refused while another
// process holds the hosts file open without FILE_SHARE_DELETE, or the
// directory is not writable for us.
func inPlaceHelps(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_SHARING_VIOLATION)
}
