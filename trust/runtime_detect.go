package trust

// runtimeBinaries lists, per GOOS, well-known files whose presence means a
// runtime is installed even when its configuration directory does not exist
// yet.
var runtimeBinaries = map[string]map[Runtime][]string{
	"linux": {
		Docker:     {"/usr/bin/docker", "/usr/bin/dockerd", "/usr/local/bin/docker", "/usr/local/bin/dockerd"},
		Containerd: {"/usr/bin/containerd", "/usr/local/bin/containerd"},
		Containers: {"/usr/bin/podman", "/usr/local/bin/podman", "/usr/bin/crio", "/usr/local/bin/crio"},
		K3s:        {"/usr/local/bin/k3s", "/usr/bin/k3s"},
	},
	"darwin": {
		Docker: {"/Applications/Docker.app", "/usr/local/bin/docker", "/opt/homebrew/bin/docker"},
	},
}

// configDir is the directory whose existence shows rt is set up, or "" when
// rt is not configured on paths.GOOS.
func (p RuntimePaths) configDir(rt Runtime) string {
	var f string
	switch rt {
	case Docker:
		f = p.Docker
	case Containerd:
		f = p.Containerd
	case Containers:
		f = p.Containers
	case K3s:
		f = p.K3sConfig
	}
	if f == "" {
		return ""
	}
	return sysDir(p.GOOS, f)
}

// AllRuntimes is every runtime, in the order edgecr configures them.
func AllRuntimes() []Runtime { return []Runtime{Docker, Containerd, Containers, K3s} }

// DetectRuntimes returns the runtimes present on the system under root: those
// whose configuration directory (/etc/docker, /etc/containerd,
// /etc/containers, /etc/rancher/k3s, ~/.docker, ...) or a well-known binary
// exists. exists is called with paths under root. It is pure.
func DetectRuntimes(root string, paths RuntimePaths, exists func(string) bool) []Runtime {
	var found []Runtime
	for _, rt := range AllRuntimes() {
		dir := paths.configDir(rt)
		if dir == "" {
			continue
		}
		for _, p := range append([]string{dir}, runtimeBinaries[paths.GOOS][rt]...) {
			if exists(rooted(root, p)) {
				found = append(found, rt)
				break
			}
		}
	}
	return found
}
