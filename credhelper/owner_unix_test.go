//go:build unix

package credhelper

import (
	"os"
	"syscall"
	"testing"
)

func assertOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("owner of %s = %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}
