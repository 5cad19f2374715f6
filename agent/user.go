package agent

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/edgecr/edgecr/credhelper"
)

// User is the person whose Docker config and credential `edgecr join`
// configures: the invoking user, or under sudo the user who ran sudo.
type User struct {
	Name string
	Home string
	// Sudo reports that the process runs as root on behalf of Name: files
	// created for the user get UID and GID as their owner.
	Sudo     bool
	UID, GID int
}

// ResolveUser picks the user the client-side files are for. Under sudo
// (euid 0 and SUDO_USER, SUDO_UID and SUDO_GID all set, SUDO_USER not root;
// never on Windows) it is $SUDO_USER, whose home directory comes from lookup
// (user.Lookup: sudo resets HOME to root's). Otherwise it is the current
// user, with home from homeDir (os.UserHomeDir). All inputs are injected so
// that the rules are tested without sudo.
func ResolveUser(goos string, euid int, env func(string) string, lookup func(string) (*user.User, error), homeDir func() (string, error)) (User, error) {
	name := env("SUDO_USER")
	if goos != "windows" && euid == 0 && name != "" && name != "root" && env("SUDO_UID") != "" && env("SUDO_GID") != "" {
		uid, err1 := strconv.Atoi(env("SUDO_UID"))
		gid, err2 := strconv.Atoi(env("SUDO_GID"))
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return User{}, fmt.Errorf("resolving the sudo user: SUDO_UID %q or SUDO_GID %q is not a number", env("SUDO_UID"), env("SUDO_GID"))
		}
		u, err := lookup(name)
		if err != nil {
			return User{}, fmt.Errorf("looking up SUDO_USER %q: %w", name, err)
		}
		if u.HomeDir == "" {
			return User{}, fmt.Errorf("looking up SUDO_USER %q: no home directory", name)
		}
		return User{Name: name, Home: u.HomeDir, Sudo: true, UID: uid, GID: gid}, nil
	}
	home, err := homeDir()
	if err != nil {
		home = "" // credhelper.DefaultPath then asks for EDGECR_CONFIG_DIR
	}
	n := env("USER")
	if goos == "windows" {
		n = env("USERNAME")
	}
	return User{Name: n, Home: home, UID: -1, GID: -1}, nil
}

// Env returns env as the user would see it: under sudo, HOME is the user's
// home rather than root's.
func (u User) Env(env func(string) string) func(string) string {
	if !u.Sudo {
		return env
	}
	return func(k string) string {
		if k == "HOME" {
			return u.Home
		}
		return env(k)
	}
}

// fileOptions are the credhelper options for the user's files: under sudo,
// created files are the user's, and root writes only inside the user's
// home, through nothing the user could point elsewhere
// (credhelper.WithOwner).
func (u User) fileOptions() []credhelper.Option {
	if !u.Sudo {
		return nil
	}
	return []credhelper.Option{credhelper.WithOwner(u.UID, u.GID, u.Home)}
}
