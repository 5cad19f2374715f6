package trust

import (
	"fmt"
	"strconv"
)

// RuntimePlan is what configuring container runtimes for one registry
// writes. Paths are as the target machine sees them; RuntimeWriter applies
// them under its root.
type RuntimePlan struct {
	GOOS     string
	Registry string        // host:port
	Runtimes []Runtime     // runtimes configured, in order
	Files    []PlannedFile // whole files edgecr owns
	K3s      *K3sEdit      // entry merged into registries.yaml; nil without k3s
	Notices  []string      // what the user must do for the change to take effect
}

// PlannedFile is one whole file edgecr writes.
type PlannedFile struct {
	Runtime Runtime
	Path    string
	Content []byte
}

// K3sEdit is the configs."<registry>".tls.ca_file entry edgecr merges into
// k3s's registries.yaml.
type K3sEdit struct {
	Path     string // registries.yaml
	Registry string
	CAFile   string
}

// PlanRuntimes computes the files that make runtimes trust the registry's
// CA: Docker and podman/CRI-O certs.d/<registry>/ca.crt, containerd
// certs.d/<registry>/hosts.toml with a ca.crt next to it, and for k3s a CA
// file plus a registries.yaml entry. It is pure.
func PlanRuntimes(paths RuntimePaths, registry string, pem []byte, runtimes []Runtime) (RuntimePlan, error) {
	reg, err := checkRegistry(registry)
	if err != nil {
		return RuntimePlan{}, err
	}
	c, err := parseCA(pem)
	if err != nil {
		return RuntimePlan{}, err
	}
	goos := paths.GOOS
	plan := RuntimePlan{GOOS: goos, Registry: reg}
	seen := map[Runtime]bool{}
	for _, rt := range runtimes {
		if seen[rt] {
			continue
		}
		seen[rt] = true
		if paths.configDir(rt) == "" || (rt == K3s && paths.K3sCADir == "") {
			return RuntimePlan{}, fmt.Errorf("planning %s trust for %s: %w on %s", rt, reg, ErrUnsupported, goos)
		}
		switch rt {
		case Docker:
			plan.add(rt, sysJoin(goos, paths.Docker, certsDirName(goos, reg), "ca.crt"), c.pem)
			if msg := DockerDesktopRestartMessage(goos); msg != "" {
				plan.Notices = append(plan.Notices, msg)
			}
		case Containerd:
			dir := sysJoin(goos, paths.Containerd, reg)
			ca := sysJoin(goos, dir, "ca.crt")
			plan.add(rt, ca, c.pem)
			plan.add(rt, sysJoin(goos, dir, "hosts.toml"), HostsTOML(reg, ca))
		case Containers:
			plan.add(rt, sysJoin(goos, paths.Containers, reg, "ca.crt"), c.pem)
		case K3s:
			ca := sysJoin(goos, paths.K3sCADir, reg, "ca.crt")
			plan.add(rt, ca, c.pem)
			plan.K3s = &K3sEdit{Path: paths.K3sConfig, Registry: reg, CAFile: ca}
			plan.Notices = append(plan.Notices, K3sRestartMessage)
		default:
			return RuntimePlan{}, fmt.Errorf("planning %q trust for %s: %w", rt, reg, ErrUnsupported)
		}
		plan.Runtimes = append(plan.Runtimes, rt)
	}
	return plan, nil
}

func (p *RuntimePlan) add(rt Runtime, path string, content []byte) {
	p.Files = append(p.Files, PlannedFile{Runtime: rt, Path: path, Content: content})
}

// HostsTOML returns containerd's hosts.toml for registry, trusting the CA in
// caFile (a path as the machine sees it). containerd reads it per pull when
// its CRI registry config_path points at the certs.d directory (the default
// from containerd 2.0; ctr needs --hosts-dir).
func HostsTOML(registry, caFile string) []byte {
	url := strconv.Quote("https://" + registry)
	return fmt.Appendf(nil, `# Written by edgecr: trust the CA of the edge registry %s.
# "edgecr leave" removes this file.
server = %s

[host.%s]
  ca = %s
`, registry, url, url, strconv.Quote(caFile))
}
