package trust

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
)

// Runtime is a container runtime whose registry trust edgecr configures.
type Runtime string

// The runtimes this package configures.
const (
	Docker     Runtime = "docker"     // certs.d/<host:port>/ca.crt
	Containerd Runtime = "containerd" // certs.d/<host:port>/hosts.toml + ca.crt
	Containers Runtime = "containers" // podman, CRI-O, buildah, skopeo: containers/certs.d/<host:port>/ca.crt
	K3s        Runtime = "k3s"        // registries.yaml configs."<host:port>".tls.ca_file
)

// RuntimePaths says where each runtime reads registry trust, as the target
// machine sees it (not under --root). An empty field means the runtime is not
// configured on that OS.
type RuntimePaths struct {
	GOOS       string // separator and directory naming rules (Docker on Windows drops ':')
	Docker     string // Docker's certs.d directory
	Containerd string // containerd's hosts directory (config_path)
	Containers string // containers/image certs.d directory
	K3sConfig  string // k3s registries.yaml
	K3sCADir   string // where edgecr keeps the CA files registries.yaml points at
}

// DefaultRuntimePaths returns the conventional locations for goos. getenv
// looks up the environment of the user the files are for (HOME on macOS,
// ProgramData on Windows); it is os.Getenv at the edge.
func DefaultRuntimePaths(goos string, getenv func(string) string) (RuntimePaths, error) {
	switch goos {
	case "linux":
		return RuntimePaths{
			GOOS:       goos,
			Docker:     "/etc/docker/certs.d",
			Containerd: "/etc/containerd/certs.d",
			Containers: "/etc/containers/certs.d",
			K3sConfig:  "/etc/rancher/k3s/registries.yaml",
			K3sCADir:   "/etc/rancher/k3s/edgecr",
		}, nil
	case "darwin", "windows":
		dir, err := DockerCertsDir(goos, getenv)
		if err != nil {
			return RuntimePaths{}, err
		}
		return RuntimePaths{GOOS: goos, Docker: dir}, nil
	default:
		return RuntimePaths{}, fmt.Errorf("locating container runtime configuration on %s: %w", goos, ErrUnsupported)
	}
}

// DockerCertsDir returns the certs.d directory Docker reads on goos:
// /etc/docker/certs.d on Linux, ~/.docker/certs.d on macOS (Docker Desktop),
// %ProgramData%\docker\certs.d on Windows.
func DockerCertsDir(goos string, getenv func(string) string) (string, error) {
	switch goos {
	case "linux":
		return "/etc/docker/certs.d", nil
	case "darwin":
		home := getenv("HOME")
		if home == "" {
			return "", fmt.Errorf("locating Docker certs.d on darwin: HOME is not set")
		}
		return path.Join(home, ".docker", "certs.d"), nil
	case "windows":
		pd := getenv("ProgramData")
		if pd == "" {
			return "", fmt.Errorf("locating Docker certs.d on windows: ProgramData is not set")
		}
		return winJoin(pd, "docker", "certs.d"), nil
	default:
		return "", fmt.Errorf("locating Docker certs.d on %s: %w", goos, ErrUnsupported)
	}
}

// NeedsDockerDesktopRestart reports whether Docker on goos is Docker Desktop,
// which copies certs.d into its VM only when it starts.
func NeedsDockerDesktopRestart(goos string) bool {
	return goos == "darwin" || goos == "windows"
}

// DockerDesktopRestartMessage is what the agent tells the user after
// changing Docker's certs.d on goos; "" when no restart is needed.
func DockerDesktopRestartMessage(goos string) string {
	if !NeedsDockerDesktopRestart(goos) {
		return ""
	}
	return "Docker Desktop reads registry certificates only when it starts: restart Docker Desktop (whale menu > Restart) before pushing or pulling"
}

// K3sRestartMessage is what the agent tells the user after changing k3s's
// registries.yaml, which k3s reads only at start.
const K3sRestartMessage = "k3s reads registries.yaml only when it starts: restart it (systemctl restart k3s, or k3s-agent on agent nodes)"

// checkRegistry validates a registry address host[:port] and returns it in
// canonical form. The address becomes a directory name, so nothing but a
// hostname or IP and a port is accepted.
func checkRegistry(reg string) (string, error) {
	host, port, hasPort := reg, "", false
	switch {
	case strings.HasPrefix(reg, "[") && strings.HasSuffix(reg, "]"):
		host = reg[1 : len(reg)-1]
	case strings.HasPrefix(reg, "[") || strings.Count(reg, ":") == 1:
		h, p, err := net.SplitHostPort(reg)
		if err != nil {
			return "", fmt.Errorf("checking registry %q: %w: %w", reg, ErrInvalidRegistry, err)
		}
		host, port, hasPort = h, p, true
	case strings.Contains(reg, ":"):
		return "", fmt.Errorf("checking registry %q: %w: IPv6 addresses need brackets", reg, ErrInvalidRegistry)
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", fmt.Errorf("checking registry %q: %w: bad port %q", reg, ErrInvalidRegistry, port)
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else if !validHostname(host) {
		return "", fmt.Errorf("checking registry %q: %w: bad host %q", reg, ErrInvalidRegistry, host)
	}
	switch {
	case hasPort:
		return net.JoinHostPort(host, port), nil
	case strings.Contains(host, ":"):
		return "[" + host + "]", nil
	default:
		return host, nil
	}
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// sysJoin joins path elements the way goos spells paths.
func sysJoin(goos string, elem ...string) string {
	if goos == "windows" {
		return winJoin(elem...)
	}
	return path.Join(elem...)
}

func winJoin(elem ...string) string {
	parts := make([]string, 0, len(elem))
	for i, e := range elem {
		e = strings.ReplaceAll(e, "/", `\`)
		if i > 0 {
			e = strings.TrimLeft(e, `\`)
		}
		if e = strings.TrimRight(e, `\`); e != "" {
			parts = append(parts, e)
		}
	}
	return strings.Join(parts, `\`)
}

// sysDir is path.Dir the way goos spells paths.
func sysDir(goos, p string) string {
	if goos == "windows" {
		if i := strings.LastIndex(p, `\`); i > 0 {
			return p[:i]
		}
		return p
	}
	return path.Dir(p)
}

// certsDirName is the directory name a runtime looks up for reg: Docker on
// Windows drops the colon, which Windows file names cannot hold.
func certsDirName(goos, reg string) string {
	if goos == "windows" {
		return strings.ReplaceAll(reg, ":", "")
	}
	return reg
}
