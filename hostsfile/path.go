package hostsfile

import "strings"

// DefaultPath returns where the hosts file lives on the operating system
// goos (a runtime.GOOS value), reading environment variables through env
// (os.Getenv at the edge, a map in tests). It only computes a path: callers
// resolve it once, in cmd/, and pass it to [NewFile].
//
// Windows: %SystemRoot%\System32\drivers\etc\hosts, with C:\Windows when
// SystemRoot is unset. Every other system: /etc/hosts.
func DefaultPath(goos string, env func(string) string) string {
	if goos != "windows" {
		return "/etc/hosts"
	}
	root := strings.TrimRight(env("SystemRoot"), `\/`)
	if root == "" {
		root = `C:\Windows`
	}
	return root + `\System32\drivers\etc\hosts`
}
