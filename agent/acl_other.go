//go:build !windows

package agent

import "os"

// protectStateDir: on unix the state directory's mode (0755) is its
// protection; nothing more to do.
func protectStateDir(string) error { return nil }

// createSecretTemp: on unix os.CreateTemp makes the file 0600, which is
// its protection from the start.
func createSecretTemp(dir, pattern string) (*os.File, error) { return os.CreateTemp(dir, pattern) }
