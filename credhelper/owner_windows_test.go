//go:build windows

package credhelper

import "testing"

// assertOwner is never reached on Windows: the owner tests skip there.
func assertOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
}
