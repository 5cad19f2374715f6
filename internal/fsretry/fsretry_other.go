//go:build !windows

package fsretry

import "os"

// Rename is os.Rename: unix renames over open files.
func Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
