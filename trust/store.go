package trust

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// Store is an OS trust store holding CA certificates by name.
//
// Install and Uninstall report whether they changed anything; both are
// idempotent. Installed does not need privileges (edgecr status runs as the
// user). pem is exactly one PEM CERTIFICATE block; macOS and Windows find the
// certificate to remove by its thumbprint, so Uninstall takes it too.
type Store interface {
	Install(ctx context.Context, name string, pem []byte) (changed bool, err error)
	Uninstall(ctx context.Context, name string, pem []byte) (changed bool, err error)
	Installed(ctx context.Context, name string, pem []byte) (bool, error)
}

// Kind is a flavour of OS trust store.
type Kind string

// The trust store flavours this package knows.
const (
	Debian  Kind = "debian"  // Debian, Ubuntu and derivatives: update-ca-certificates
	Alpine  Kind = "alpine"  // Alpine: update-ca-certificates (its own, not relocatable)
	RHEL    Kind = "rhel"    // RHEL, Fedora, CentOS, Rocky, Alma, Amazon Linux: update-ca-trust
	Arch    Kind = "arch"    // Arch and derivatives: trust extract-compat
	MacOS   Kind = "darwin"  // macOS: security, System keychain
	Windows Kind = "windows" // Windows: crypt32, LocalMachine Root
)

// Option configures a Store built by NewStore.
type Option func(*options)

type options struct {
	tempDir string
	log     *slog.Logger
	winRoot WindowsRoot
}

// WithTempDir sets where the macOS store stages the PEM file that security
// reads (default: os.TempDir() at the time of the call).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

// WithLogger sets a logger for the commands a Store runs (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// NewStore builds the Store of the given kind for the system under root,
// running commands through r. It does no I/O. macOS and Windows stores change
// the live system only, so root must be "/" (or "") for them.
func NewStore(kind Kind, root string, r Runner, opts ...Option) (Store, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	switch kind {
	case Debian, Alpine, RHEL, Arch:
		return &anchorStore{layout: linuxLayouts[kind], root: root, run: r, log: o.log}, nil
	case MacOS, Windows:
		if !isLiveRoot(root) {
			return nil, fmt.Errorf("opening %s trust store under %s: %w: it cannot be relocated", kind, root, ErrUnsupported)
		}
		if kind == MacOS {
			return newKeychainStore(r, o.tempDir, o.log), nil
		}
		w := o.winRoot
		if w == nil {
			w = systemWindowsRoot()
		}
		return newWindowsStore(w, o.log), nil
	default:
		return nil, fmt.Errorf("opening %q trust store: %w", kind, ErrUnsupported)
	}
}

// OpenStore detects the trust store of the system under root (reading its
// os-release and probing its anchor directories) and builds it. goos is the
// target's GOOS (runtime.GOOS for the live system). It is the I/O edge of
// DetectKind and NewStore.
func OpenStore(goos, root string, r Runner, opts ...Option) (Store, Kind, error) {
	var osRelease []byte
	if goos == "linux" {
		var err error
		if osRelease, err = ReadOSRelease(root); err != nil {
			return nil, "", err
		}
	}
	kind, err := DetectKind(goos, root, osRelease, exists)
	if err != nil {
		return nil, "", err
	}
	s, err := NewStore(kind, root, r, opts...)
	return s, kind, err
}

// exists is the production file probe.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
