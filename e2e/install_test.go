//go:build linux

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const installBinDir = "/usr/local/bin"

var installedNames = []string{"edgecr", "docker-credential-edgecr"}

// binDirState is what /usr/local/bin holds of edgecr's files: name →
// content (mode in front), temp files included.
func binDirState(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(installBinDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.Contains(e.Name(), "edgecr") {
			continue
		}
		p := filepath.Join(installBinDir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		m[e.Name()] = fi.Mode().String() + " " + string(b)
	}
	return m
}

// keepBinDir puts /usr/local/bin's edgecr files back as they were, byte
// for byte, when the test ends (or is interrupted), and removes what the
// installer added.
func keepBinDir(t *testing.T) map[string]string {
	t.Helper()
	type saved struct {
		data []byte
		mode fs.FileMode
	}
	before := map[string]*saved{}
	for _, n := range installedNames {
		p := filepath.Join(installBinDir, n)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			before[n] = nil
			continue
		}
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v (mode %v): refusing to touch it", p, err, fi.Mode())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		before[n] = &saved{b, fi.Mode().Perm()}
	}
	state := binDirState(t)
	onUndo(t, "binaries in "+installBinDir, func(logf func(string, ...any)) error {
		var errs []error
		if tmps, _ := filepath.Glob(filepath.Join(installBinDir, ".*edgecr.new.*")); len(tmps) > 0 {
			for _, p := range tmps {
				errs = append(errs, os.Remove(p))
			}
		}
		for n, s := range before {
			p := filepath.Join(installBinDir, n)
			if s == nil {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			if err := os.WriteFile(p+".restore", s.data, s.mode); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, os.Chmod(p+".restore", s.mode), os.Rename(p+".restore", p))
		}
		return errors.Join(errs...)
	})
	return state
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestInstallScriptJoinsFromPrintedLine is acceptance points 1 and 2 of the
// installers issue: as root on this machine, the Linux line that `edgecrd
// token create --print-join-command` prints, run verbatim, downloads the
// agent from the device over the pinned connection, installs it into
// /usr/local/bin and joins, and a push works; a wrong pin and a binary that
// no longer matches the device's SHA256SUMS stop it with a clear message,
// with nothing installed and the token unspent; re-running over an older
// install replaces it in place.
func TestInstallScriptJoinsFromPrintedLine(t *testing.T) {
	testenv.NeedRoot(t, "the installer writes /usr/local/bin; edgecr join writes /etc/hosts and the system trust store")
	testenv.NeedCommand(t, "curl", "install.sh downloads with curl --pinnedpubkey")
	testenv.NeedCommand(t, "ip", "makes the network namespace the device runs in")
	testenv.NeedCommand(t, "update-ca-certificates", "the system trust store is Debian's")
	if runtime.GOOS != "linux" {
		t.Skip("the Linux line")
	}

	// The dist dir: the agent binaries this test process built are
	// linux/GOARCH, which is what install.sh picks on this machine.
	dist := t.TempDir()
	agent := filepath.Join(dist, "edgecr-linux-"+runtime.GOARCH)
	copyFile(t, bin.edgecr, agent)
	copyFile(t, bin.helper, filepath.Join(dist, "docker-credential-edgecr-linux-"+runtime.GOARCH))
	good, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}

	snapshotSystem(t) // cleanup puts hosts, trust store and config.json back
	binBefore := keepBinDir(t)
	dev := netnsDevice(t, "", "--dist-dir", dist)

	out, e, err := edgecrd(t, "token", "create", "--data-dir", dev.dataDir, "--print-join-command", "-o", "json")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, e)
	}
	var tok struct{ Token, InstallCommand string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !strings.Contains(tok.InstallCommand, "https://"+dev.IP+":31001/install.sh") {
		t.Fatalf("install command does not point at the device %s:\n%s", dev.IP, tok.InstallCommand)
	}
	t.Logf("printed line:\n  %s", tok.InstallCommand)

	// Run verbatim as root: the line and the script call sudo only for a
	// user, so a root-only machine without sudo needs no shim.
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	t.Setenv("PATH", path) // the helper docker and the keychain call is in /usr/local/bin
	run := func(line string) (string, error) {
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+path)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	tokenUnspent := func(when string) {
		t.Helper()
		out, _, err := edgecrd(t, "token", "ls", "--data-dir", dev.dataDir, "-o", "json")
		if err != nil || !strings.Contains(out, `"used": 0`) {
			t.Errorf("%s: the token was spent (%v):\n%s", when, err, out)
		}
	}
	nothingInstalled := func(when string) {
		t.Helper()
		if now := binDirState(t); !maps.Equal(now, binBefore) {
			t.Errorf("%s: %s changed: had %d edgecr files, now %d", when, installBinDir, len(binBefore), len(now))
		}
	}

	t.Run("wrong pin", func(t *testing.T) {
		sum := sha256.Sum256([]byte(rand.Text()))
		wrong := "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
		pin := tok.InstallCommand[strings.Index(tok.InstallCommand, "sha256//"):]
		pin = pin[:strings.Index(pin, "'")]
		out, _ := run(strings.ReplaceAll(tok.InstallCommand, pin, wrong))
		t.Logf("output:\n%s", indent(out))
		if !strings.Contains(out, "public key does not match pinned public key") {
			t.Errorf("no clear curl message about the pin:\n%s", out)
		}
		nothingInstalled("wrong pin")
		tokenUnspent("wrong pin")
	})

	t.Run("tampered binary", func(t *testing.T) {
		// SHA256SUMS was computed when edgecrd started; the binary it now
		// serves is another.
		if err := os.WriteFile(agent, append(bytes.Clone(good), "tampered"...), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(agent, good, 0o755)
		out, err := run(tok.InstallCommand)
		t.Logf("output:\n%s", indent(out))
		if err == nil || !strings.Contains(out, "checksum mismatch for edgecr-linux-"+runtime.GOARCH) || !strings.Contains(out, "nothing installed") {
			t.Errorf("exit %v; want a failure saying checksum mismatch:\n%s", err, out)
		}
		nothingInstalled("tampered binary")
		tokenUnspent("tampered binary")
	})
	if err := os.WriteFile(agent, good, 0o755); err != nil {
		t.Fatal(err)
	}

	leave := onUndo(t, "edgecr leave", func(logf func(string, ...any)) error {
		out, err := exec.Command(filepath.Join(installBinDir, "edgecr"), "leave").CombinedOutput()
		logf("edgecr leave (cleanup): %v\n%s", err, out)
		return nil
	})
	out, err = run(tok.InstallCommand)
	t.Logf("the printed line:\n%s", indent(out))
	if err != nil {
		t.Fatalf("the printed line failed: %v", err)
	}
	for _, n := range installedNames {
		b, err := os.ReadFile(filepath.Join(installBinDir, n))
		want, _ := os.ReadFile(filepath.Join(dist, n+"-linux-"+runtime.GOARCH))
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s/%s is not the served binary (%v)", installBinDir, n, err)
		}
	}
	edgecr := filepath.Join(installBinDir, "edgecr")
	if out, err := exec.Command(edgecr, "status").CombinedOutput(); err != nil {
		t.Fatalf("edgecr status after the install: %v\n%s", err, indent(string(out)))
	}

	// A push through the helper's credential and the system trust store.
	c := &client{t: t, root: "/"}
	img, err := random.Image(4<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := dev.registryRef(t, "e2e/installed:1")
	if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(c.registryTransport())); err != nil {
		t.Fatalf("push after the install: %v", err)
	}

	if out, err := exec.Command(edgecr, "leave").CombinedOutput(); err != nil {
		t.Fatalf("edgecr leave: %v\n%s", err, indent(string(out)))
	}

	// Re-running upgrades in place: an older edgecr in /usr/local/bin is
	// replaced by the served one, and the new token joins again.
	old := append(bytes.Clone(good), "an older version"...)
	if err := os.WriteFile(edgecr, old, 0o755); err != nil {
		t.Fatal(err)
	}
	out, e, err = edgecrd(t, "token", "create", "--data-dir", dev.dataDir, "--print-join-command", "-o", "json")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, e)
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if out, err := run(tok.InstallCommand); err != nil {
		t.Fatalf("the printed line over an older install: %v\n%s", err, indent(out))
	}
	if b, _ := os.ReadFile(edgecr); !bytes.Equal(b, good) {
		t.Errorf("re-running did not replace %s with the served binary", edgecr)
	}
	if out, err := exec.Command(edgecr, "status").CombinedOutput(); err != nil {
		t.Errorf("edgecr status after the upgrade: %v\n%s", err, indent(string(out)))
	}
	if out, err := exec.Command(edgecr, "leave").CombinedOutput(); err != nil {
		t.Fatalf("edgecr leave: %v\n%s", err, indent(string(out)))
	}
	leave.run(t.Logf)
}
