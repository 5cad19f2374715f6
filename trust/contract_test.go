package trust_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// TestStoreContract runs the trust.Store contract against every
// implementation this machine can host: the in-memory fake agent tests use,
// the Debian store on a temp root with the emulated and with the real
// update-ca-certificates, the relocated (file-only) RHEL, Arch and Alpine
// stores, and the macOS and Windows stores over emulated tools.
func TestStoreContract(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		trusttest.TestStore(t, trusttest.NewStore(), "dev1")
	})
	t.Run("debian/emulated tool", func(t *testing.T) {
		root, r, _ := debianRoot(t)
		s, err := trust.NewStore(trust.Debian, root, r)
		if err != nil {
			t.Fatal(err)
		}
		trusttest.TestStore(t, s, "dev1")
	})
	t.Run("debian/real tool", func(t *testing.T) {
		root := realDebianRoot(t)
		s, err := trust.NewStore(trust.Debian, root, trust.ExecRunner{})
		if err != nil {
			t.Fatal(err)
		}
		trusttest.TestStore(t, s, "dev1")
	})
	for kind, dir := range map[trust.Kind]string{
		trust.RHEL:   "etc/pki/ca-trust/source/anchors",
		trust.Arch:   "etc/ca-certificates/trust-source/anchors",
		trust.Alpine: "usr/local/share/ca-certificates",
	} {
		t.Run(string(kind)+"/relocated", func(t *testing.T) {
			root := t.TempDir()
			mkdir(t, filepath.Join(root, dir))
			r := &trusttest.Runner{}
			s, err := trust.NewStore(kind, root, r)
			if err != nil {
				t.Fatal(err)
			}
			trusttest.TestStore(t, s, "dev1")
			if len(r.Calls()) != 0 {
				t.Errorf("relocated %s store ran %v", kind, r.Calls())
			}
		})
	}
	t.Run("darwin/emulated security", func(t *testing.T) {
		em := newKeychainEmulator()
		s, err := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		trusttest.TestStore(t, s, "dev1")
	})
	t.Run("windows/emulated crypt32", func(t *testing.T) {
		r := &trusttest.Runner{}
		s, err := trust.NewStore(trust.Windows, "/", r, trust.WithWindowsRoot(newCrypt32Emulator()))
		if err != nil {
			t.Fatal(err)
		}
		trusttest.TestStore(t, s, "dev1")
		if len(r.Calls()) != 0 {
			t.Errorf("the Windows store ran commands: %v", r.Calls())
		}
	})
}

// realDebianTool finds Debian's update-ca-certificates script and makes sure
// it is the relocatable one (Alpine's ignores its flags and would change the
// live /etc/ssl). It skips the test when there is none.
func realDebianTool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("update-ca-certificates")
	if err != nil {
		for _, p := range []string{"/usr/sbin/update-ca-certificates", "/sbin/update-ca-certificates"} {
			if _, statErr := os.Stat(p); statErr == nil {
				t.Setenv("PATH", filepath.Dir(p)+string(os.PathListSeparator)+os.Getenv("PATH"))
				path, err = p, nil
				break
			}
		}
	}
	testenv.Need(t, err == nil, "update-ca-certificates not installed (Debian package ca-certificates): cannot run the real-tool test")
	script, err := os.ReadFile(path)
	if err != nil || !containsAll(string(script), "--certsconf", "--certsdir", "--localcertsdir", "--etccertsdir", "--hooksdir") {
		t.Skipf("%s does not take Debian's relocation flags: not running it", path)
	}
	testenv.NeedCommand(t, "openssl", "update-ca-certificates needs it for rehash")
	return path
}

// realDebianRoot is a Debian fixture root whose trust store was built by the
// real tool, relocated into the temp root.
func realDebianRoot(t *testing.T) string {
	t.Helper()
	realDebianTool(t)
	root := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir()) // the script's mktemp scratch files
	debianFixture(t, root, trusttest.NewCA(t, "distribution CA 1"), trusttest.NewCA(t, "distribution CA 2"))
	if out, err := exec.Command("update-ca-certificates", append(relocationFlags(root), "--fresh")...).CombinedOutput(); err != nil {
		t.Fatalf("building fixture trust store: %v\n%s", err, out)
	}
	return root
}

func relocationFlags(root string) []string {
	p := func(s string) string { return filepath.Join(root, s) }
	return []string{
		"--certsconf", p("etc/ca-certificates.conf"),
		"--certsdir", p("usr/share/ca-certificates"),
		"--localcertsdir", p("usr/local/share/ca-certificates"),
		"--etccertsdir", p("etc/ssl/certs"),
		"--hooksdir", p("etc/ca-certificates/update.d"),
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
