package agent

import (
	"errors"
	"os/user"
	"slices"
	"testing"

	"github.com/edgecr/edgecr/trust"
)

func TestRootedAndStatePath(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name, got, want string
	}{
		{"linux live", StatePath("linux", "/", env(nil)), "/var/lib/edgecr/state.json"},
		{"linux empty root", StatePath("linux", "", env(nil)), "/var/lib/edgecr/state.json"},
		{"linux rooted", StatePath("linux", "/tmp/r/", env(nil)), "/tmp/r/var/lib/edgecr/state.json"},
		{"darwin", StatePath("darwin", "/", env(nil)), "/var/lib/edgecr/state.json"},
		{"windows", StatePath("windows", "", env(map[string]string{"ProgramData": `D:\PD\`})), `D:\PD\edgecr\state.json`},
		{"windows default", StatePath("windows", "", env(nil)), `C:\ProgramData\edgecr\state.json`},
		{"windows rooted", StatePath("windows", `E:\img`, env(nil)), `E:\img\ProgramData\edgecr\state.json`},
		{"rooted hosts", Rooted("linux", "/r", "/etc/hosts"), "/r/etc/hosts"},
		{"rooted windows hosts", Rooted("windows", `E:\img\`, `C:\Windows\System32\drivers\etc\hosts`), `E:\img\Windows\System32\drivers\etc\hosts`},
		{"trust name", TrustName("ecr.box.internal:31001"), "ecr.box.internal_31001"},
		{"trust name v6", TrustName("[fd00::1]:31001"), "fd00__1_31001"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestRestartNotices(t *testing.T) {
	if n := RestartNotices("linux", true, false); len(n) != 0 {
		t.Errorf("linux docker: %q", n)
	}
	for _, goos := range []string{"darwin", "windows"} {
		n := RestartNotices(goos, true, false)
		if len(n) != 1 || n[0] != trust.DockerDesktopRestartMessage(goos) {
			t.Errorf("%s docker: %q", goos, n)
		}
		if n := RestartNotices(goos, false, false); len(n) != 0 {
			t.Errorf("%s unchanged: %q", goos, n)
		}
	}
	if n := RestartNotices("linux", false, true); !slices.Equal(n, []string{trust.K3sRestartMessage}) {
		t.Errorf("k3s: %q", n)
	}
}

func TestResolveUser(t *testing.T) {
	sudoEnv := map[string]string{"SUDO_USER": "alice", "SUDO_UID": "1000", "SUDO_GID": "1001", "HOME": "/root", "USER": "root"}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	lookup := func(name string) (*user.User, error) {
		if name == "alice" {
			return &user.User{Username: "alice", HomeDir: "/home/alice"}, nil
		}
		return nil, user.UnknownUserError(name)
	}
	home := func() (string, error) { return "/root", nil }

	u, err := ResolveUser("linux", 0, env(sudoEnv), lookup, home)
	if err != nil || u != (User{Name: "alice", Home: "/home/alice", Sudo: true, UID: 1000, GID: 1001}) {
		t.Errorf("sudo: %+v, %v", u, err)
	}
	if got := u.Env(env(sudoEnv))("HOME"); got != "/home/alice" {
		t.Errorf("HOME under sudo = %q", got)
	}
	for name, c := range map[string]struct {
		goos string
		euid int
		env  map[string]string
	}{
		"not root":    {"linux", 1000, sudoEnv},
		"windows":     {"windows", 0, sudoEnv},
		"no SUDO_UID": {"linux", 0, map[string]string{"SUDO_USER": "alice", "SUDO_GID": "1", "USER": "root"}},
		"sudo root":   {"linux", 0, map[string]string{"SUDO_USER": "root", "SUDO_UID": "0", "SUDO_GID": "0", "USER": "root"}},
	} {
		u, err := ResolveUser(c.goos, c.euid, env(c.env), lookup, home)
		if err != nil || u.Sudo || u.Home != "/root" || u.UID != -1 {
			t.Errorf("%s: %+v, %v", name, u, err)
		}
	}
	bad := map[string]string{"SUDO_USER": "bob", "SUDO_UID": "1", "SUDO_GID": "1"}
	if _, err := ResolveUser("linux", 0, env(bad), lookup, home); err == nil {
		t.Error("unknown SUDO_USER accepted")
	}
	bad = map[string]string{"SUDO_USER": "alice", "SUDO_UID": "x", "SUDO_GID": "1"}
	if _, err := ResolveUser("darwin", 0, env(bad), lookup, home); err == nil {
		t.Error("non-numeric SUDO_UID accepted")
	}
	u, _ = ResolveUser("linux", 1000, env(nil), lookup, func() (string, error) { return "", errors.New("no home") })
	if u.Home != "" {
		t.Errorf("home = %q", u.Home)
	}
}

func TestHelperEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "HOME=/root"}
	if got := helperEnv(environ, User{}); !slices.Equal(got, environ) {
		t.Errorf("not sudo: %q", got)
	}
	if got := helperEnv(environ, User{Sudo: true, Home: "/home/alice"}); !slices.Equal(got, []string{"PATH=/bin", "HOME=/home/alice"}) {
		t.Errorf("sudo: %q", got)
	}
}
