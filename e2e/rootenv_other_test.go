//go:build !linux

package e2e

// releaseRootEnv: root tests run on Linux only.
func releaseRootEnv() error { return nil }
