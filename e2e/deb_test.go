//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// TestDebInstallRunRemove is acceptance point 3 of the installers issue, as
// far as a machine without a running systemd allows: the edgecrd .deb
// installs with dpkg -i (binary, unit, user), the unit passes
// systemd-analyze verify, edgecrd runs as the unit's user in its
// StateDirectory, and dpkg -r removes the package but leaves the data dir.
func TestDebInstallRunRemove(t *testing.T) {
	testenv.NeedRoot(t, "dpkg -i installs into /usr and adds the edgecrd user")
	dpkg := testenv.NeedCommand(t, "dpkg", "installs the .deb")
	setpriv := testenv.NeedCommand(t, "setpriv", "runs edgecrd as the unit's user")
	lockRootEnv(t)

	const (
		dataDir  = "/var/lib/edgecrd"
		unitPath = "/usr/lib/systemd/system/edgecrd.service"
	)
	if out, err := exec.Command("dpkg-query", "-W", "edgecrd").CombinedOutput(); err == nil {
		t.Fatalf("the edgecrd package is installed on this machine: refusing to touch it\n%s", out)
	}
	for _, p := range []string{"/usr/bin/edgecrd", unitPath, dataDir} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s exists on this machine: refusing to touch it", p)
		}
	}
	hadUser := exec.Command("getent", "passwd", "edgecrd").Run() == nil

	binDir, out := t.TempDir(), t.TempDir()
	for src, name := range map[string]string{bin.edgecrd: "edgecrd", bin.edgecr: "edgecr", bin.helper: "docker-credential-edgecr"} {
		copyFile(t, src, filepath.Join(binDir, name+"-linux-"+runtime.GOARCH))
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "run", "./installers/pkg", "-version", "0.0.1", "-bin-dir", binDir, "-arch", runtime.GOARCH, "-formats", "deb", "-out", out)
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the packages: %v\n%s", err, b)
	}
	deb := filepath.Join(out, "edgecrd_0.0.1_"+runtime.GOARCH+".deb")

	onUndo(t, "the edgecrd package", func(logf func(string, ...any)) error {
		var errs []error
		if b, err := exec.Command(dpkg, "--purge", "edgecrd").CombinedOutput(); err != nil {
			errs = append(errs, errors.New("dpkg --purge edgecrd: "+err.Error()+"\n"+string(b)))
		}
		if !hadUser {
			exec.Command("userdel", "edgecrd").Run()
			exec.Command("groupdel", "edgecrd").Run()
		}
		errs = append(errs, os.RemoveAll(dataDir))
		return errors.Join(errs...)
	})
	if b, err := exec.Command(dpkg, "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, indent(string(b)))
	}
	if b, _ := os.ReadFile("/usr/bin/edgecrd"); !bytes.Equal(b, mustRead(t, bin.edgecrd)) {
		t.Fatal("/usr/bin/edgecrd is not the packaged binary")
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("getent", "passwd", "edgecrd").Run(); err != nil {
		t.Fatalf("the package did not create the edgecrd user: %v", err)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if b, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil || strings.Contains(string(b), "edgecrd.service") {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, b)
		}
	}

	// What systemd does for the unit: StateDirectory= makes the data dir
	// owned by User= (mode StateDirectoryMode=), then ExecStart runs as
	// that user with UMask= and NoNewPrivileges=. `init` is serve's first
	// half: it creates the state and exits.
	for _, want := range []string{"User=edgecrd", "StateDirectory=edgecrd", "StateDirectoryMode=0700", "UMask=0077", "ExecStart=/usr/bin/edgecrd serve --data-dir " + dataDir} {
		if !strings.Contains(string(unit), want+"\n") && !strings.Contains(string(unit), want+" ") {
			t.Fatalf("the installed unit lacks %q", want)
		}
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("chown", "edgecrd:edgecrd", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, b)
	}
	run := exec.Command("sh", "-c", `umask 0077 && exec "$0" --reuid edgecrd --regid edgecrd --init-groups --no-new-privs /usr/bin/edgecrd init --data-dir "$1" --ip 198.18.0.250`, setpriv, dataDir)
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("edgecrd init as the unit's user: %v\n%s", err, indent(string(b)))
	}
	fi, err := os.Stat(filepath.Join(dataDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("ca.key is %v", fi.Mode())
	}

	if b, err := exec.Command(dpkg, "-r", "edgecrd").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, indent(string(b)))
	}
	for _, p := range []string{"/usr/bin/edgecrd", unitPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after dpkg -r (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "ca.crt")); err != nil {
		t.Errorf("dpkg -r took the data dir: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
