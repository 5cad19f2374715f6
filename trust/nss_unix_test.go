//go:build unix

package trust_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// Under sudo, certutil runs as the user: every file of the database stays
// the user's, none is root's.
func TestNSSAsUserKeepsOwnership(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("browsers keep NSS databases in the home on Linux")
	}
	testenv.NeedRoot(t, "running certutil as another user")
	certutil := testenv.NeedCommand(t, "certutil", "the browser trust tests run the real certutil (apt install libnss3-tools)")
	const uid, gid = 65534, 65534 // nobody
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(base, "home")
	db := filepath.Join(home, ".pki/nssdb")
	mkdir(t, db)
	cmd := exec.Command(certutil, "-N", "-d", "sql:"+db, "--empty-password")
	if err := filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("certutil -N as nobody: %v\n%s", err, out)
	}
	n := &trust.NSS{Home: home, Run: trust.ExecAsUser{UID: uid, GID: gid}, TempDir: base}
	ca := trusttest.NewCA(t, "edgecr device CA")
	ctx := context.Background()
	if changed, err := n.Install(ctx, db, "edgecr", ca); err != nil || !changed {
		t.Fatalf("Install as nobody = %v, %v", changed, err)
	}
	if changed, err := n.Uninstall(ctx, db, "edgecr", ca); err != nil || !changed {
		t.Fatalf("Uninstall as nobody = %v, %v", changed, err)
	}
	err := filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is owned by %d:%d, want nobody's", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
