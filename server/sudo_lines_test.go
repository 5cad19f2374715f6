//go:build linux || darwin

package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// shimPath is a PATH of one dir holding links to the real tools named
// (when present) and the scripts given, so that what is not there (sudo)
// is really not found.
func shimPath(t *testing.T, tools []string, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The user kinds the printed lines must work for: root on a machine
// without sudo, a user with sudo; and a user without sudo, who gets a
// clear refusal. id is faked so that the test does not depend on who runs
// it; the fake sudo runs the command and says so.
var sudoCases = []struct {
	name     string
	uid      string
	sudo     bool
	wantSudo bool
	ok       bool
}{
	{"root without sudo", "0", false, false, true},
	{"root with sudo", "0", true, false, true},
	{"user with sudo", "1000", true, true, true},
	{"user without sudo", "1000", false, false, false},
}

const fakeSudo = "echo \"sudo ran: $*\"\nexec \"$@\"\n"

func TestJoinLineWorksAsRootAndWithSudo(t *testing.T) {
	d := &Device{Host: "ecr.box1.internal", IPs: []string{"198.18.0.10"}, Port: 31001}
	line := joinCommands(d, "edgecr1.tok", nil).Join
	t.Logf("join line: %s", line)
	for _, c := range sudoCases {
		t.Run(c.name, func(t *testing.T) {
			scripts := map[string]string{
				"id":     "echo " + c.uid + "\n",
				"edgecr": "echo \"edgecr ran: $*\"\n",
			}
			if c.sudo {
				scripts["sudo"] = fakeSudo
			}
			cmd := exec.Command("/bin/sh", "-c", line)
			cmd.Env = []string{"PATH=" + shimPath(t, nil, scripts)}
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if (err == nil) != c.ok {
				t.Fatalf("exit %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				return
			}
			if !strings.Contains(string(out), "edgecr ran: join https://198.18.0.10:31001 --token edgecr1.tok") {
				t.Fatal("edgecr join did not run with the URL and token")
			}
			if got := strings.Contains(string(out), "sudo ran: edgecr join"); got != c.wantSudo {
				t.Fatalf("through sudo: %v, want %v", got, c.wantSudo)
			}
		})
	}
}

// The one-line install, as printed (plus --bin-dir into a temp dir), under
// sh with only the tools install.sh needs on PATH: root installs and joins
// without sudo, a user does both through sudo, a user without sudo is told
// so before anything is installed. Before, the line piped to `sudo sh`,
// which is "sudo: command not found" on a root-only machine.
func TestInstallLineWorksAsRootAndWithSudo(t *testing.T) {
	testenv.NeedCommand(t, "curl", "install.sh downloads with curl --pinnedpubkey")
	agentName := "edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
	helperName := "docker-credential-edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
	const agent = "#!/bin/sh\necho \"agent ran: $*\"\n"
	dist := t.TempDir()
	for n, c := range map[string]string{agentName: agent, helperName: "#!/bin/sh\necho helper\n"} {
		if err := os.WriteFile(filepath.Join(dist, n), []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, func(o *Options) { o.DistDir = dist })
	// The line as printed, for the test server's loopback address rather
	// than the device IP (198.18.0.10 is not this test's to reach).
	pin, _, err := ts.state.ServerKeyPin()
	if err != nil {
		t.Fatal(err)
	}
	install, _ := installCommands("https://"+ts.addr, pin, "edgecr1.tok", true)
	if strings.Contains(install, "sudo") {
		t.Fatalf("the install line names sudo: %s", install)
	}
	tools := []string{"curl", "awk", "cut", "sha256sum", "shasum", "mktemp", "uname", "cp", "chmod", "mv", "rm", "mkdir", "head", "cat", "sh", "perl"}
	for _, c := range sudoCases {
		t.Run(c.name, func(t *testing.T) {
			scripts := map[string]string{"id": "echo " + c.uid + "\n"}
			if c.sudo {
				scripts["sudo"] = fakeSudo
			}
			binDir := filepath.Join(t.TempDir(), "bin")
			cmd := exec.Command("/bin/sh", "-c", install+" --bin-dir "+ShellQuote(binDir))
			cmd.Env = []string{"PATH=" + shimPath(t, tools, scripts), "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if (err == nil) != c.ok {
				t.Fatalf("exit %v, want ok=%v", err, c.ok)
			}
			_, statErr := os.Stat(filepath.Join(binDir, "edgecr"))
			if !c.ok {
				if !strings.Contains(string(out), "run this as root (no sudo found)") || statErr == nil || strings.Contains(string(out), "agent ran") {
					t.Fatal("want a refusal before anything is installed")
				}
				return
			}
			if statErr != nil || !strings.Contains(string(out), "agent ran: join https://") {
				t.Fatalf("not installed and joined: %v", statErr)
			}
			sudoJoin := strings.Contains(string(out), "sudo ran: "+filepath.Join(binDir, "edgecr")+" join")
			sudoCopy := strings.Contains(string(out), "sudo ran: mv -f")
			if sudoJoin != c.wantSudo || sudoCopy != c.wantSudo {
				t.Fatalf("join through sudo %v, install through sudo %v; want %v", sudoJoin, sudoCopy, c.wantSudo)
			}
		})
	}
}
