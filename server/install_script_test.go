//go:build linux || darwin

package server

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/installers"
)

// install.sh against a running server, without root: --bin-dir is a temp
// dir and the "agent" is a script that prints what it was run with.
func TestInstallScript(t *testing.T) {
	testenv.NeedCommand(t, "curl", "install.sh downloads with curl --pinnedpubkey")
	agentName := "edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
	helperName := "docker-credential-edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
	const agent = "#!/bin/sh\necho \"agent ran: $*\"\n"
	const helper = "#!/bin/sh\necho helper\n"

	script := filepath.Join(t.TempDir(), "install.sh")
	b, _ := installers.Scripts.ReadFile("install.sh")
	if err := os.WriteFile(script, b, 0o644); err != nil {
		t.Fatal(err)
	}

	type setup struct {
		files    map[string]string // the dist dir at start
		after    map[string]string // written after start
		pin      func(real string) string
		existing string // an older edgecr in the bin dir
	}
	good := map[string]string{agentName: agent, helperName: helper}
	otherPin := func(string) string {
		s := sha256.Sum256([]byte("another key"))
		return "sha256//" + base64.StdEncoding.EncodeToString(s[:])
	}
	for _, tc := range []struct {
		name    string
		setup   setup
		ok      bool
		message string
	}{
		{"installs and joins", setup{files: good}, true, "agent ran: join https://"},
		{"upgrades in place", setup{files: good, existing: "#!/bin/sh\necho old\n"}, true, "agent ran: join https://"},
		{"wrong pin", setup{files: good, pin: otherPin}, false, "public key does not match pinned public key"},
		{"tampered after start", setup{files: good, after: map[string]string{agentName: agent + "# evil\n"}}, false, "checksum mismatch for " + agentName},
		{"helper missing", setup{files: map[string]string{agentName: agent}}, false, "404"},
		{"no dist dir", setup{}, false, "the device says: edgecrd serves no agent binaries: its --dist-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dist := t.TempDir()
			for n, c := range tc.setup.files {
				if err := os.WriteFile(filepath.Join(dist, n), []byte(c), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.setup.files == nil {
				dist = filepath.Join(dist, "missing")
			}
			ts := startServer(t, func(o *Options) { o.DistDir = dist })
			for n, c := range tc.setup.after {
				if err := os.WriteFile(filepath.Join(dist, n), []byte(c), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			pin, _, err := ts.state.ServerKeyPin()
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup.pin != nil {
				pin = tc.setup.pin(pin)
			}
			binDir := filepath.Join(t.TempDir(), "bin")
			before := map[string]string{}
			if tc.setup.existing != "" {
				os.Mkdir(binDir, 0o755)
				os.WriteFile(filepath.Join(binDir, "edgecr"), []byte(tc.setup.existing), 0o755)
				before["edgecr"] = tc.setup.existing
			}
			url := "https://" + ts.addr
			out, err := exec.Command("sh", script, "--token", "tok'en", "--url", url, "--pin", pin, "--bin-dir", binDir).CombinedOutput()
			t.Logf("install.sh:\n%s", out)
			if (err == nil) != tc.ok || !strings.Contains(string(out), tc.message) {
				t.Fatalf("exit %v, want ok=%v and %q in the output", err, tc.ok, tc.message)
			}
			got := map[string]string{}
			entries, _ := os.ReadDir(binDir)
			for _, e := range entries {
				c, _ := os.ReadFile(filepath.Join(binDir, e.Name()))
				got[e.Name()] = string(c)
			}
			want := before
			if tc.ok {
				want = map[string]string{"edgecr": agent, "docker-credential-edgecr": helper}
				if !strings.Contains(string(out), "agent ran: join "+url+" --token tok'en") {
					t.Errorf("edgecr join was not run with the URL and token")
				}
			} else if strings.Contains(string(out), "agent ran") {
				t.Errorf("join ran after a failure")
			}
			if len(got) != len(want) {
				t.Fatalf("bin dir holds %v, want %v", keys(got), keys(want))
			}
			for n, c := range want {
				if got[n] != c {
					t.Errorf("%s: %q, want %q", n, got[n], c)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// Many nodes installing at once behind one address can find the device
// busy: install.sh waits out a 429 as Retry-After says, says so, and
// finishes on its own. The device here allows one request in flight per
// address, and the test holds it for a while with a join whose body does
// not come.
func TestInstallScriptWaitsOutABusyDevice(t *testing.T) {
	testenv.NeedCommand(t, "curl", "install.sh downloads with curl --pinnedpubkey")
	for _, shell := range []string{"sh", "bash"} {
		t.Run(shell, func(t *testing.T) {
			testenv.NeedCommand(t, shell, "install.sh runs under "+shell)
			agentName := "edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
			helperName := "docker-credential-edgecr-" + runtime.GOOS + "-" + runtime.GOARCH
			dist := t.TempDir()
			for n, c := range map[string]string{agentName: "#!/bin/sh\necho \"agent ran: $*\"\n", helperName: "#!/bin/sh\n"} {
				if err := os.WriteFile(filepath.Join(dist, n), []byte(c), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			script := filepath.Join(t.TempDir(), "install.sh")
			b, _ := installers.Scripts.ReadFile("install.sh")
			if err := os.WriteFile(script, b, 0o644); err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, func(o *Options) { o.DistDir = dist; o.MaxInFlightPerAddr = 1 })
			pin, _, err := ts.state.ServerKeyPin()
			if err != nil {
				t.Fatal(err)
			}

			hold, err := tls.Dial("tcp", ts.addr, ts.transport().TLSClientConfig)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Close()
			fmt.Fprintf(hold, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", APIJoin, ts.addr)
			for i := 0; ; i++ {
				resp := ts.do("GET", "/install.sh", "", "", nil, nil)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests {
					break
				}
				if i == 50 {
					t.Fatalf("GET /install.sh with a request held in flight: %d, want 429", resp.StatusCode)
				}
				time.Sleep(20 * time.Millisecond)
			}
			release := time.AfterFunc(2500*time.Millisecond, func() { hold.Close() })
			defer release.Stop()

			binDir := filepath.Join(t.TempDir(), "bin")
			url := "https://" + ts.addr
			start := time.Now()
			out, err := exec.Command(shell, script, "--token", "tok", "--url", url, "--pin", pin, "--bin-dir", binDir).CombinedOutput()
			t.Logf("install.sh under %s, %s:\n%s", shell, time.Since(start).Round(time.Millisecond), out)
			if err != nil || !strings.Contains(string(out), "agent ran: join "+url+" --token tok") {
				t.Fatalf("install.sh: %v, want it to finish and run the join", err)
			}
			if !strings.Contains(string(out), "the device answered HTTP 429 (busy, or throttling this address) for SHA256SUMS; retrying in ") ||
				!strings.Contains(string(out), "(attempt 2 of 8)") {
				t.Errorf("install.sh did not say what it waited for")
			}
		})
	}
}
