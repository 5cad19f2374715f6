//go:build unix

package hostsfile

import (
	"os"
	"syscall"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"

	"golang.org/x/sys/unix"
)

// renameBlockedErrs are the errors of a rename onto a bind-mounted file.
var renameBlockedErrs = []error{unix.EBUSY, unix.EXDEV}

func TestFileKeepsOwner(t *testing.T) {
	testenv.NeedRoot(t, "giving the file another owner")
	path := writeHosts(t, t.TempDir(), userHosts, 0o644)
	if err := os.Chown(path, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(path).Add(t.Context(), ip1, host); err != nil {
		t.Fatal(err)
	}
	st := stat(t, path).Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner after Add = %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
}
