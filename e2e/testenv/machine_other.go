//go:build !unix

package testenv

import "testing"

// LockMachine is a no-op where the system-changing tests do not run.
func LockMachine(t testing.TB) {}
