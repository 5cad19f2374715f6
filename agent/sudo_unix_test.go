//go:build unix

package agent_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/e2e/testenv"
)

// sudoEnv is an env whose join runs as root on behalf of uid 4242, whose
// home is e.home (owned by them).
func sudoEnv(t *testing.T) *env {
	testenv.NeedRoot(t, "giving files to another user, as join does under sudo")
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	if err := os.Chown(e.home, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HOME": "/root", "PATH": "/nonexistent"}
	e.sys = agent.NewSystem(agent.SystemConfig{
		GOOS:     "linux",
		Root:     e.root,
		User:     agent.User{Name: "alice", Home: e.home, Sudo: true, UID: 4242, GID: 4243},
		Getenv:   func(k string) string { return vars[k] },
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		Runner:   e.runner,
	})
	e.helper = &agenttest.Helper{Sys: e.sys}
	e.sys.Helper = e.helper
	return e
}

// asUser makes path (a directory, or with target a symbolic link to it)
// as the user would have.
func asUser(t *testing.T, path, target string) {
	t.Helper()
	var err error
	if target == "" {
		err = os.Mkdir(path, 0o700)
	} else {
		err = os.Symlink(target, path)
	}
	if err == nil {
		err = os.Lchown(path, 4242, 4243)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Under sudo, root never follows the user's links out of their home: a
// credentials.json (or config.json) pointing at /etc/profile.d would have
// root create a file there that the user owns. Join refuses, naming the
// link, before it spends the token; a link inside the home is followed.
func TestJoinUnderSudoRefusesLinksOutOfTheHome(t *testing.T) {
	for _, tc := range []struct {
		name string
		dirs []string // the user's, outermost first; the file goes in the last
		file string
	}{
		{"credentials.json", []string{".config", ".config/edgecr"}, "credentials.json"},
		{"config.json", []string{".docker"}, "config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sudoEnv(t)
			outside := filepath.Join(t.TempDir(), "profile.d") // root's
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.dirs {
				asUser(t, filepath.Join(e.home, d), "")
			}
			dir := filepath.Join(e.home, tc.dirs[len(tc.dirs)-1])
			link := filepath.Join(dir, tc.file)
			asUser(t, link, filepath.Join(outside, "zz.sh"))
			before := e.snapshot()
			_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
			if !errors.Is(err, credhelper.ErrUnsafePath) {
				t.Fatalf("join = %v, want ErrUnsafePath", err)
			}
			if e.dev.JoinHits() != 0 {
				t.Error("the token was spent")
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("join created %v outside the home", entries)
			}
			e.requireSnapshot(before, "after a refused join")

			// The same link into the home works, and the file is the user's.
			inside := filepath.Join(e.home, "dotfiles")
			asUser(t, inside, "")
			os.Remove(link)
			asUser(t, link, filepath.Join(inside, tc.file))
			e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
			fi, err := os.Stat(filepath.Join(inside, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 {
				t.Errorf("%s owned by uid %d, want 4242", tc.file, st.Uid)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was replaced: %v", err)
			}
			if _, err := e.sys.Leave(context.Background(), agent.LeaveOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
