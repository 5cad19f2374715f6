package trust

import (
	"fmt"
	"path"
)

// DesktopVM is a container runtime that runs its engine in a VM on macOS or
// Windows and takes registry trust from the host only when it starts, or
// not at all.
type DesktopVM string

// The desktop VMs the agent knows.
const (
	// DockerDesktop copies the host's trusted CAs (the macOS keychain, the
	// Windows Root store) and ~/.docker/certs.d into its VM when it starts
	// (docs.docker.com, Docker Desktop: "Add CA certificates").
	DockerDesktop DesktopVM = "Docker Desktop"
	// Colima copies ~/.docker/certs.d into its VM when it starts
	// (abiosoft/colima#258: "the certs are copied into the VM on startup";
	// colima#1112).
	Colima DesktopVM = "colima"
	// RancherDesktop imports the host's trusted CAs (keychain, Root store)
	// when it starts (as issue 17 reports; not verified here).
	RancherDesktop DesktopVM = "Rancher Desktop"
	// PodmanMachine imports neither: the CA must go into the VM's own
	// /etc/containers/certs.d by hand (as issue 17 reports).
	PodmanMachine DesktopVM = "podman machine"
)

// desktopVMMarks are, per GOOS, files whose presence shows a desktop VM is
// installed; "~" is the user's home, "%X%" an environment variable.
var desktopVMMarks = map[string]map[DesktopVM][]string{
	"darwin": {
		DockerDesktop:  {"/Applications/Docker.app"},
		Colima:         {"~/.colima", "/opt/homebrew/bin/colima", "/usr/local/bin/colima"},
		RancherDesktop: {"/Applications/Rancher Desktop.app", "~/.rd/bin/rdctl"},
		PodmanMachine:  {"~/.config/containers/podman/machine", "/opt/podman/bin/podman"},
	},
	"windows": {
		DockerDesktop:  {`%ProgramFiles%\Docker\Docker\Docker Desktop.exe`, `%ProgramData%\DockerDesktop`},
		RancherDesktop: {`%ProgramFiles%\Rancher Desktop\Rancher Desktop.exe`, `%LOCALAPPDATA%\Programs\Rancher Desktop\Rancher Desktop.exe`},
		PodmanMachine:  {`%ProgramFiles%\RedHat\Podman\podman.exe`, `~\.config\containers\podman\machine`},
	},
}

// DetectDesktopVMs returns the desktop VMs installed on a goos system, in a
// fixed order. home is the user's home directory, getenv the user's
// environment, exists the file probe (paths as the system sees them). It is
// pure.
func DetectDesktopVMs(goos, home string, getenv func(string) string, exists func(string) bool) []DesktopVM {
	var found []DesktopVM
	for _, vm := range []DesktopVM{DockerDesktop, Colima, RancherDesktop, PodmanMachine} {
		for _, m := range desktopVMMarks[goos][vm] {
			if p, ok := expandMark(goos, m, home, getenv); ok && exists(p) {
				found = append(found, vm)
				break
			}
		}
	}
	return found
}

// expandMark resolves "~" and one leading %VAR%; false when what it needs
// is unset.
func expandMark(goos, m, home string, getenv func(string) string) (string, bool) {
	switch {
	case len(m) > 1 && m[0] == '~':
		if home == "" {
			return "", false
		}
		if goos == "windows" {
			return winJoin(home, m[2:]), true
		}
		return path.Join(home, m[2:]), true
	case len(m) > 2 && m[0] == '%':
		end := 1
		for end < len(m) && m[end] != '%' {
			end++
		}
		v := getenv(m[1:end])
		if v == "" || end+2 > len(m) {
			return "", false
		}
		return winJoin(v, m[end+2:]), true
	}
	return m, true
}

// DesktopVMNotice says what the user must do for vm on goos to trust the
// registry's CA that join just installed on the host; caFile is a copy of
// the CA on the host ("" if none was written).
func DesktopVMNotice(goos string, vm DesktopVM, registry, caFile string) string {
	switch vm {
	case DockerDesktop:
		if goos == "windows" {
			return "Docker Desktop reads the Windows Root store and %USERPROFILE%\\.docker\\certs.d only when it starts: restart it (whale icon in the notification area > Restart) before pushing or pulling"
		}
		return "Docker Desktop copies the keychain's CAs and ~/.docker/certs.d into its VM only when it starts: restart it (whale menu > Restart) before pushing or pulling"
	case Colima:
		return "colima copies ~/.docker/certs.d into its VM only when it starts: run `colima restart` before pushing or pulling"
	case RancherDesktop:
		return "Rancher Desktop imports the host's trusted CAs only when it starts: run `rdctl shutdown` and then `rdctl start` (or quit and reopen it) before pushing or pulling"
	case PodmanMachine:
		src := caFile
		if src == "" {
			src = "ca.pem (the CA from the device's web UI, Certificates page)"
		}
		dir := "/etc/containers/certs.d/" + registry
		ssh := fmt.Sprintf("podman machine ssh \"sudo mkdir -p %s && sudo tee %s/ca.crt >/dev/null\"", dir, dir)
		if goos == "windows" {
			// PowerShell has no < redirection ("The '<' operator is
			// reserved for future use"): pipe the file instead.
			return fmt.Sprintf("podman machine does not use the host's trust: copy the CA into it: Get-Content -Raw %s | %s", src, ssh)
		}
		return fmt.Sprintf("podman machine does not use the host's trust: copy the CA into it: %s < %s", ssh, src)
	}
	return ""
}
