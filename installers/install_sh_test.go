//go:build linux || darwin

package installers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// stub writes an executable shell script named name into dir.
func stub(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runPlatform runs install.sh with uname, sysctl and curl stubbed: curl
// logs the URLs it is asked for and serves an empty SHA256SUMS, so the
// script stops after asking for the agent of the platform it picked.
func runPlatform(t *testing.T, unameS, unameM, translated string) (urls, out string) {
	t.Helper()
	testenv.NeedCommand(t, "sh", "install.sh is a sh script")
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "curl.log")
	stub(t, bin, "uname", "case \"$1\" in -s) echo "+unameS+";; -m) echo "+unameM+";; esac\n")
	if translated != "" {
		// sysctl(8) on macOS: -n prints the value alone.
		stub(t, bin, "sysctl", "[ \"$*\" = '-n sysctl.proc_translated' ] && echo "+translated+"\n")
	} else {
		// An Intel Mac has no such sysctl: sysctl fails with "unknown oid".
		stub(t, bin, "sysctl", "echo \"sysctl: unknown oid '$2'\" >&2; exit 1\n")
	}
	stub(t, bin, "curl", `out=; url=
w=
while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; --pinnedpubkey|-D) shift 2;; -w) w=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac; done
echo "$url" >> `+log+`
[ -n "$out" ] && : > "$out"
[ "$w" = '%{http_code}' ] && printf 200
exit 0
`)
	script, err := Scripts.ReadFile("install.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-s", "--", "--token", "T", "--url", "https://192.0.2.1:31001", "--pin", "sha256//x", "--bin-dir", t.TempDir())
	cmd.Stdin = strings.NewReader(string(script))
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	b, _ := cmd.CombinedOutput()
	l, _ := os.ReadFile(log)
	return string(l), string(b)
}

// Issue 17: under Rosetta 2, uname -m says x86_64 on an arm64 Mac; the
// script installs the arm64 build (it installed amd64).
func TestInstallScriptPlatform(t *testing.T) {
	for _, tc := range []struct {
		name, s, m, translated, want string
	}{
		{"mac under Rosetta", "Darwin", "x86_64", "1", "edgecr-darwin-arm64"},
		{"native arm64 mac", "Darwin", "arm64", "0", "edgecr-darwin-arm64"},
		{"intel mac", "Darwin", "x86_64", "", "edgecr-darwin-amd64"},
		{"mac, native x86_64 process", "Darwin", "x86_64", "0", "edgecr-darwin-amd64"},
		{"linux", "Linux", "x86_64", "", "edgecr-linux-amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			urls, out := runPlatform(t, tc.s, tc.m, tc.translated)
			if !strings.Contains(urls, "/dist/"+tc.want+"\n") {
				t.Errorf("asked for:\n%s\nwant /dist/%s; output:\n%s", urls, tc.want, out)
			}
			if rosetta := strings.Contains(out, "Rosetta"); rosetta != (tc.translated == "1") {
				t.Errorf("Rosetta note shown: %v; output:\n%s", rosetta, out)
			}
		})
	}
}
