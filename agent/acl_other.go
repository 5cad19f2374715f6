//go:build !windows

package agent

// protectStateDir: on unix the state directory's mode (0755) is its
// protection; nothing more to do.
func protectStateDir(string) error { return nil }

// protectSecretFile: on unix mode 0600 is the protection.
func protectSecretFile(string) error { return nil }
