package agent

import (
	"strings"

	"github.com/edgecr/edgecr/trust"
)

// IsLiveRoot reports whether root means the running system itself rather
// than a directory holding another system's files (--root).
func IsLiveRoot(root string) bool { return root == "" || root == "/" || root == `\` }

// Rooted returns the path, on a system of the given GOOS, at which this
// process sees the system path sysPath when the target system lives under
// root. A Windows drive letter of sysPath is dropped under a root. It is
// pure, so that it answers for any GOOS on any machine.
func Rooted(goos, root, sysPath string) string {
	if IsLiveRoot(root) {
		return sysPath
	}
	sep := "/"
	if goos == "windows" {
		sep = `\`
		if len(sysPath) >= 2 && sysPath[1] == ':' {
			sysPath = sysPath[2:]
		}
		sysPath = strings.ReplaceAll(sysPath, "/", `\`)
	}
	return strings.TrimRight(root, `/\`) + sep + strings.TrimLeft(sysPath, `/\`)
}

// StatePath returns where the agent keeps its state on a system of the
// given GOOS under root: /var/lib/edgecr/state.json on unix,
// %ProgramData%\edgecr\state.json on Windows (C:\ProgramData when unset).
// env is os.Getenv at the edge.
func StatePath(goos, root string, env func(string) string) string {
	if goos == "windows" {
		pd := strings.TrimRight(env("ProgramData"), `\/`)
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return Rooted(goos, root, pd+`\edgecr\state.json`)
	}
	return Rooted(goos, root, "/var/lib/edgecr/state.json")
}

// TrustName is the name a registry's CA gets in the OS trust store:
// host:port with the colon made a "_" (ecr.box.internal_31001), a plain file
// name on every OS.
func TrustName(registry string) string {
	return strings.NewReplacer(":", "_", "[", "", "]", "").Replace(registry)
}

// RestartNotices says what the user must restart for a runtime change to
// take effect on goos: Docker Desktop (macOS, Windows) after its certs.d
// changed, k3s after its registries.yaml changed.
func RestartNotices(goos string, dockerChanged, k3sChanged bool) []string {
	var out []string
	if dockerChanged {
		if msg := trust.DockerDesktopRestartMessage(goos); msg != "" {
			out = append(out, msg)
		}
	}
	if k3sChanged {
		out = append(out, trust.K3sRestartMessage)
	}
	return out
}
