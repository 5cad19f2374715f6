//go:build !linux

package hostsfile

import "os"

// keepLabel does nothing where there is no SELinux.
func keepLabel(string, *os.File) error { return nil }
