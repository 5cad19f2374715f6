package credhelper

import "strings"

// ConfigDirEnv names the variable that relocates edgecr's client
// configuration directory (tests, containers, portable installs).
const ConfigDirEnv = "EDGECR_CONFIG_DIR"

// CredentialsFileName is the name of the store's file in the config dir.
const CredentialsFileName = "credentials.json"

// DefaultPath returns where the credential store lives for a user of the
// given OS: $EDGECR_CONFIG_DIR/credentials.json when set, else the OS's
// per-user config dir (as os.UserConfigDir picks it) plus edgecr/:
//
//	linux and other unix  $XDG_CONFIG_HOME/edgecr, else ~/.config/edgecr
//	darwin                ~/Library/Application Support/edgecr
//	windows               %APPDATA%\edgecr, else ~\AppData\Roaming\edgecr
//
// env is os.Getenv or a fake; home is the user's home directory. It returns
// "" when the location depends on home and home is "". It reads nothing
// itself, so that cmd/ can resolve it for $SUDO_USER as well as for the
// current user.
func DefaultPath(goos string, env func(string) string, home string) string {
	sep := "/"
	if goos == "windows" {
		sep = `\`
	}
	if dir := env(ConfigDirEnv); dir != "" {
		return joinPath(sep, dir, CredentialsFileName)
	}
	var base string
	switch goos {
	case "windows":
		base = env("APPDATA")
		if base == "" && home != "" {
			base = joinPath(sep, home, "AppData", "Roaming")
		}
	case "darwin", "ios":
		if home != "" {
			base = joinPath(sep, home, "Library", "Application Support")
		}
	default:
		// XDG says a relative $XDG_CONFIG_HOME is invalid and must be ignored.
		if x := env("XDG_CONFIG_HOME"); strings.HasPrefix(x, "/") {
			base = x
		} else if home != "" {
			base = joinPath(sep, home, ".config")
		}
	}
	if base == "" {
		return ""
	}
	return joinPath(sep, base, "edgecr", CredentialsFileName)
}

// joinPath joins elements with sep without consulting the running OS, so
// that DefaultPath can answer for any goos. Trailing separators of an
// element are dropped ("/" and `C:\` stay roots).
func joinPath(sep string, elem ...string) string {
	out := elem[0]
	for _, e := range elem[1:] {
		out = strings.TrimRight(out, `/\`) + sep + e
	}
	return out
}
