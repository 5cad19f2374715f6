//go:build unix

package credhelper

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/e2e/testenv"
)

// Under sudo, root writes the user's credential and config.json: it must
// not follow the user's symbolic links out of their home, nor write
// through a directory someone else owns (a user could otherwise have root
// create a file they own in /etc/profile.d). Links inside the home are
// followed, as for a dotfile manager's config.json.
func TestOwnerConfinedToHome(t *testing.T) {
	testenv.NeedRoot(t, "giving files away, as edgecr join does under sudo")
	const uid, gid = 4242, 4343
	setup := func(t *testing.T) (home, outside string) {
		base := t.TempDir()
		home, outside = filepath.Join(base, "home"), filepath.Join(base, "etc", "profile.d")
		for _, d := range []string{home, outside} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(home, uid, gid); err != nil {
			t.Fatal(err)
		}
		return home, outside
	}
	// userMkdir makes dirs (relative to home) as the user would have.
	userMkdir := func(t *testing.T, home string, dirs ...string) {
		for _, d := range dirs {
			p := filepath.Join(home, d)
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	userSymlink := func(t *testing.T, target, link string) {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	add := func(home, path string) error {
		return NewStore(path, WithOwner(uid, gid, home)).Add(&credentials.Credentials{ServerURL: testHost, Username: "client-1", Secret: testSecret})
	}
	register := func(home, path string) error {
		_, err := RegisterFile(path, testHost, testHelper, "", WithOwner(uid, gid, home))
		return err
	}
	refused := func(t *testing.T, err error, outside string, want ...string) {
		t.Helper()
		t.Logf("refused: %v", err)
		if !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("err = %v, want ErrUnsafePath", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("files appeared outside the home: %v", entries)
		}
	}

	t.Run("credentials file linked out of the home", func(t *testing.T) {
		home, outside := setup(t)
		userMkdir(t, home, ".config", ".config/edgecr")
		path := filepath.Join(home, ".config/edgecr/credentials.json")
		userSymlink(t, filepath.Join(outside, "zz.sh"), path)
		refused(t, add(home, path), outside, path, "symbolic link", filepath.Join(outside, "zz.sh"), "outside")
	})
	t.Run("config.json linked out of the home", func(t *testing.T) {
		home, outside := setup(t)
		userMkdir(t, home, ".docker")
		path := filepath.Join(home, ".docker/config.json")
		userSymlink(t, filepath.Join(outside, "zz.sh"), path)
		refused(t, register(home, path), outside, path, "outside")
		if _, err := UnregisterFile(path, Change{HostPort: testHost, Helper: testHelper, SetHelper: true}, WithOwner(uid, gid, home)); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("UnregisterFile = %v, want ErrUnsafePath", err)
		}
	})
	t.Run("directory linked out of the home", func(t *testing.T) {
		home, outside := setup(t)
		userSymlink(t, outside, filepath.Join(home, ".config"))
		path := filepath.Join(home, ".config/edgecr/credentials.json")
		refused(t, add(home, path), outside, filepath.Join(home, ".config"), "outside")
	})
	t.Run("relative link climbing out of the home", func(t *testing.T) {
		home, outside := setup(t)
		userSymlink(t, "../etc/profile.d", filepath.Join(home, ".docker"))
		refused(t, register(home, filepath.Join(home, ".docker/config.json")), outside, "outside")
	})
	t.Run("directory owned by someone else", func(t *testing.T) {
		home, outside := setup(t)
		userMkdir(t, home, ".docker")
		if err := os.Chown(filepath.Join(home, ".docker"), 5555, 5555); err != nil {
			t.Fatal(err)
		}
		refused(t, register(home, filepath.Join(home, ".docker/config.json")), outside, filepath.Join(home, ".docker"), "owned by uid 5555")
	})
	t.Run("path outside the home", func(t *testing.T) {
		home, outside := setup(t)
		refused(t, add(home, filepath.Join(outside, "credentials.json")), outside, "outside")
	})
	t.Run("lock file linked to a root file", func(t *testing.T) {
		home, outside := setup(t)
		userMkdir(t, home, ".config", ".config/edgecr")
		victim := filepath.Join(outside, "root-only")
		if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(home, ".config/edgecr/credentials.json")
		userSymlink(t, victim, path+".lock")
		if err := add(home, path); err == nil {
			t.Error("Add through a symlinked lock file succeeded")
		}
		assertOwner(t, victim, 0, 0)
	})
	t.Run("links inside the home are followed", func(t *testing.T) {
		home, outside := setup(t)
		userMkdir(t, home, "dotfiles", "dotfiles/docker", ".docker", "dotfiles/edgecr", ".config")
		cfg := filepath.Join(home, ".docker/config.json")
		userSymlink(t, "../dotfiles/docker/config.json", cfg)
		if err := register(home, cfg); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(cfg); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("config.json is no longer a link: %v", err)
		}
		assertOwner(t, filepath.Join(home, "dotfiles/docker/config.json"), uid, gid)
		userSymlink(t, filepath.Join(home, "dotfiles/edgecr"), filepath.Join(home, ".config/edgecr"))
		cred := filepath.Join(home, ".config/edgecr/credentials.json")
		if err := add(home, cred); err != nil {
			t.Fatal(err)
		}
		assertOwner(t, filepath.Join(home, "dotfiles/edgecr/credentials.json"), uid, gid)
		if u, _, err := NewStore(cred, WithOwner(uid, gid, home)).Get(testHost); err != nil || u != "client-1" {
			t.Errorf("Get = %q, %v", u, err)
		}
		// Nothing is made in a directory root owns either, for the user.
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("files outside the home: %v", entries)
		}
	})
	t.Run("the home reached through a link", func(t *testing.T) {
		home, _ := setup(t)
		alias := filepath.Join(filepath.Dir(home), "alias")
		if err := os.Symlink(home, alias); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(alias, ".config/edgecr/credentials.json")
		if err := add(alias, path); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(home, ".config/edgecr/credentials.json"))
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != uid {
			t.Errorf("credentials.json: %v", err)
		}
	})
}
