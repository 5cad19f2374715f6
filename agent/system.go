package agent

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/trust"
)

// Hosts is the hosts file (hostsfile.File).
type Hosts interface {
	AddAll(ctx context.Context, ips []netip.Addr, host string) (bool, error)
	Remove(ctx context.Context, host string) (bool, error)
	Lookup(ctx context.Context, host string) ([]hostsfile.Entry, error)
	Read(ctx context.Context) ([]byte, error)
}

// Runtimes configures container runtimes' registry trust
// (trust.RuntimeWriter).
type Runtimes interface {
	// InstallWithIntent hands persist the receipt of what it is about to
	// write before the first write.
	InstallWithIntent(ctx context.Context, plan trust.RuntimePlan, prior *trust.RuntimeReceipt, persist func(trust.RuntimeReceipt) error) (trust.RuntimeReceipt, []string, error)
	Uninstall(ctx context.Context, rc trust.RuntimeReceipt) ([]string, error)
	Verify(ctx context.Context, plan trust.RuntimePlan) ([]string, error)
}

// CredentialStore is the helper's credential store (credhelper.Store).
type CredentialStore interface {
	Add(c *credentials.Credentials) error
	Delete(serverURL string) error
	Get(serverURL string) (string, string, error)
	List() (map[string]string, error)
}

// Resolver resolves host names (net.Resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// System is everything the agent touches, behind small interfaces so that
// tests substitute temp directories and fakes. NewSystem wires the real ones.
type System struct {
	GOOS string
	// Root is "/" for the live system, or the directory --root names: every
	// system path (hosts file, trust store, runtime configuration, state)
	// lies under it.
	Root string
	User User

	HostsPath string
	Hosts     func(path string) Hosts
	// OpenTrust opens the OS trust store: of the given kind, or detected
	// when kind is "".
	OpenTrust      func(kind trust.Kind) (trust.Store, trust.Kind, error)
	RuntimePaths   trust.RuntimePaths
	DetectRuntimes func() []trust.Runtime
	Runtimes       Runtimes
	// CredentialsPath is where join stores the credential; leave uses the
	// path the state recorded.
	CredentialsPath string
	Credentials     func(path string) CredentialStore
	Docker          DockerConfig
	Helper          Helper
	// Browsers is the user's browsers' NSS databases (join --browsers).
	Browsers BrowserTrust
	// Resolver resolves the registry host for verification: the system's
	// resolver on the live system, the hosts file under Root otherwise.
	Resolver Resolver
	State    *StateFile
	Now      func() time.Time
	Log      *slog.Logger

	// DetectDesktopVMs finds Docker Desktop, colima, Rancher Desktop and
	// podman machine (macOS, Windows), whose VMs take the host's trust only
	// at start or not at all; nil under --root.
	DetectDesktopVMs func() []trust.DesktopVM

	// SignalDockerd sends dockerd SIGHUP, its live reload of daemon.json,
	// and returns its pid; nil: no daemon to reload.
	SignalDockerd func() (pid int, err error)
	// DockerdMirrors are the registry mirrors dockerd uses now; nil: not
	// asked (leave then waits a fixed time for a reload to take).
	DockerdMirrors func(ctx context.Context) ([]string, error)
}

// SystemConfig is what NewSystem needs from the edge (cmd/edgecr).
type SystemConfig struct {
	GOOS     string
	Root     string
	User     User
	Getenv   func(string) string
	Environ  []string // the environment the credential helper runs with
	LookPath func(string) (string, error)
	Runner   trust.Runner // runs update-ca-certificates, security, launchctl, certutil, ...
	// UserRunner runs what changes the user's own files (certutil on the
	// browsers' NSS databases): under sudo, as the user
	// (trust.ExecAsUser). Nil: Runner.
	UserRunner trust.Runner
	Log        *slog.Logger
}

// NewSystem wires the real implementations for the system under c.Root,
// for c.User. It does no I/O.
func NewSystem(c SystemConfig) *System {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := c.Root
	if IsLiveRoot(root) {
		root = "/"
	}
	u := c.User
	userEnv := u.Env(c.Getenv)
	statePath := StatePath(c.GOOS, root, c.Getenv)
	userRunner := c.UserRunner
	if userRunner == nil {
		userRunner = c.Runner
	}
	s := &System{
		GOOS:      c.GOOS,
		Root:      root,
		User:      u,
		HostsPath: Rooted(c.GOOS, root, hostsfile.DefaultPath(c.GOOS, c.Getenv)),
		Hosts: func(path string) Hosts {
			// The lock sits beside the state file, which join and leave
			// remove when nothing is joined: no file of ours stays in /etc.
			return hostsfile.NewFile(path, hostsfile.WithLogger(log), hostsfile.WithLockPath(HostsLockPath(statePath)))
		},
		OpenTrust: func(kind trust.Kind) (trust.Store, trust.Kind, error) {
			if kind == "" {
				return trust.OpenStore(c.GOOS, root, c.Runner, trust.WithLogger(log))
			}
			st, err := trust.NewStore(kind, root, c.Runner, trust.WithLogger(log))
			return st, kind, err
		},
		Runtimes:        &trust.RuntimeWriter{Root: root, Log: log},
		CredentialsPath: credhelper.DefaultPath(c.GOOS, userEnv, u.Home),
		Credentials: func(path string) CredentialStore {
			return credhelper.NewStore(path, u.fileOptions()...)
		},
		Docker: &DockerConfigFile{
			File:         filepath.Join(credhelper.DockerConfigDir(userEnv, u.Home), credhelper.DockerConfigFileName),
			DefaultStore: func() string { return credhelper.DefaultCredsStore(c.GOOS, c.LookPath) },
			User:         u,
		},
		Helper:   &ExecHelper{LookPath: c.LookPath, Env: helperEnv(c.Environ, u)},
		Browsers: &trust.NSS{Home: u.Home, Run: userRunner, Log: log},
		State:    NewStateFile(statePath),
		Now:      time.Now,
		Log:      log,
	}
	if paths, err := trust.DefaultRuntimePaths(c.GOOS, userEnv); err == nil {
		s.RuntimePaths = paths
		s.DetectRuntimes = func() []trust.Runtime { return trust.DetectRuntimes(root, paths, exists) }
	} else {
		s.DetectRuntimes = func() []trust.Runtime { return nil }
	}
	if IsLiveRoot(root) {
		s.DetectDesktopVMs = func() []trust.DesktopVM { return trust.DetectDesktopVMs(c.GOOS, u.Home, userEnv, exists) }
		s.Resolver = net.DefaultResolver
		s.SignalDockerd = liveDockerdSignal(c.GOOS)
		s.DockerdMirrors = liveDockerdMirrors(c.GOOS)
	} else {
		s.Resolver = &HostsResolver{File: hostsfile.NewFile(s.HostsPath)}
	}
	return s
}

// HostsResolver resolves names through a hosts file only, as the system
// under --root would.
type HostsResolver struct {
	File interface {
		Lookup(ctx context.Context, host string) ([]hostsfile.Entry, error)
	}
}

// LookupNetIP implements Resolver.
func (r *HostsResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	entries, err := r.File.Lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, e := range entries {
		if e.Addr.IsValid() {
			out = append(out, e.Addr)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host in the hosts file", Name: host, IsNotFound: true}
	}
	return out, nil
}
