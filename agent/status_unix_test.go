//go:build unix

package agent_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/trust"
)

// statusChildEnv makes TestStatusUnprivileged the unprivileged child: its
// value is the system root to check.
const statusChildEnv = "EDGECR_TEST_STATUS_ROOT"

// edgecr status works without root on a live system: the state it reads is
// world-readable and holds no secret, even while a join's credential is
// pending (its file, 0600, is skipped). The test joins as root, then runs
// Status as nobody (uid 65534) in a copy of the test binary.
func TestStatusUnprivileged(t *testing.T) {
	if root := os.Getenv(statusChildEnv); root != "" {
		statusChild(t, root)
		return
	}
	testenv.NeedRoot(t, "running edgecr status as another user")
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	token := e.dev.Token(agenttest.TokenOptions{})
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token,
		AfterStep: func(s string) error {
			if s == agent.StepTrust {
				return errCrash // the credential is still pending
			}
			return nil
		}})
	if !errors.Is(err, errCrash) {
		t.Fatalf("join = %v", err)
	}
	// Let nobody reach the root (the test's temp dirs are 0700); the home
	// stays the user's own.
	for _, d := range []string{filepath.Dir(e.root), e.root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyTestBinary(t)
	cmd := exec.Command(bin, "-test.run=^TestStatusUnprivileged$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), statusChildEnv+"="+e.root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("status as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "status as nobody: "+e.dev.Registry()) {
		t.Errorf("the child did not check the registry:\n%s", out)
	}
	e.requireNoSecret(token, string(out))
}

// A user checking a join root made for itself (no sudo) cannot read root's
// Docker config: status says to run it with sudo, not to fix the JSON or
// to join again.
func TestStatusOfRootsJoinAsAnotherUser(t *testing.T) {
	testenv.NeedRoot(t, "running edgecr status as another user")
	e := newEnv(t, envOptions{})
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	// nobody reaches the root, not root's home (0700, as /root is).
	for _, d := range []string{filepath.Dir(e.root), e.root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyTestBinary(t)
	cmd := exec.Command(bin, "-test.run=^TestStatusUnprivileged$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), statusChildEnv+"="+e.root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("status as nobody: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, agent.CheckDockerConfig+" ok=") {
			line = l
		}
	}
	if !strings.Contains(line, "ok=false") || !strings.Contains(line, "permission denied") || !strings.Contains(line, "run `sudo edgecr status`") || strings.Contains(line, "JSON") {
		t.Errorf("docker config as nobody: %q\n%s", line, out)
	}
}

func statusChild(t *testing.T, root string) {
	if os.Geteuid() == 0 {
		t.Fatal("the child runs as root")
	}
	sys := agent.NewSystem(agent.SystemConfig{
		GOOS:     "linux",
		Root:     root,
		User:     agent.User{Name: "nobody", Home: "/nonexistent", UID: -1, GID: -1},
		Getenv:   func(string) string { return "" },
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		Runner:   trust.ExecRunner{},
	})
	rs, err := sys.Status(context.Background())
	if err != nil {
		t.Fatalf("status as nobody: %v", err)
	}
	for _, r := range rs {
		t.Logf("status as nobody: %s", r.Registry)
		for _, c := range r.Checks {
			t.Logf("  %s ok=%v: %s (fix: %s)", c.Name, c.OK, c.Detail, c.Fix)
		}
	}
}

// copyTestBinary copies the running test binary where any user may run
// it (go test builds it in a 0700 directory).
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "edgecr-status-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "agent.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}
