package hostsfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// selinuxXattr holds a file's SELinux label. A new file in /etc is labelled
// etc_t, /etc/hosts is net_conf_t: renaming a new file over it without
// copying the label would lock confined services out of the hosts file.
const selinuxXattr = "security.selinux"

// keepLabel gives tmp the SELinux label of the file at path, if it has one.
func keepLabel(path string, tmp *os.File) error {
	return copyXattr(path, tmp, selinuxXattr)
}

// copyXattr copies the extended attribute name of the file at path to dst.
// A missing attribute, or a file system without extended attributes, is
// nothing to copy.
func copyXattr(path string, dst *os.File, name string) error {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP):
			return nil
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return err
		}
		have := make([]byte, n)
		if m, err := unix.Fgetxattr(int(dst.Fd()), name, have); err == nil && m == n && string(have) == string(buf[:n]) {
			return nil
		}
		return unix.Fsetxattr(int(dst.Fd()), name, buf[:n], 0)
	}
}
