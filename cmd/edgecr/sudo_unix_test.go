//go:build unix

package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/e2e/testenv"
)

// Under sudo the Docker config and the credential are $SUDO_USER's: in
// their home, owned by them; the helper runs with their HOME.
func TestJoinUnderSudo(t *testing.T) {
	testenv.NeedRoot(t, "giving files to another user")
	c := newCLI(t, agenttest.RootOptions{})
	aliceHome := t.TempDir()
	c.env = map[string]string{"HOME": "/root", "SUDO_USER": "alice", "SUDO_UID": "4242", "SUDO_GID": "4243"}
	f, out, errOut := c.factory("")
	f.LookupUser = func(name string) (*user.User, error) {
		if name != "alice" {
			return nil, user.UnknownUserError(name)
		}
		return &user.User{Username: "alice", HomeDir: aliceHome}, nil
	}
	if code := run(t.Context(), []string{"join", c.dev.URL, "--token", c.dev.Token(agenttest.TokenOptions{}), "--root", c.root}, f); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, p := range []string{
		filepath.Join(aliceHome, ".config/edgecr/credentials.json"),
		filepath.Join(aliceHome, ".config/edgecr"),
		filepath.Join(aliceHome, ".docker/config.json"),
		filepath.Join(aliceHome, ".docker"),
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4243 {
			t.Errorf("%s owned by %d:%d, want 4242:4243", p, st.Uid, st.Gid)
		}
	}
	if !strings.Contains(out.String(), "owned by alice") || !strings.Contains(out.String(), "run docker as alice") {
		t.Errorf("output:\n%s", out)
	}
}
