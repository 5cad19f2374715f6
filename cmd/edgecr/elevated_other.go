//go:build !windows

package main

import "os"

// elevated reports whether this process may change system files: it runs as
// root.
func elevated() bool { return os.Geteuid() == 0 }
