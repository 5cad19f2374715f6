package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// SystemKeychain is the macOS keychain that holds machine-wide roots.
const SystemKeychain = "/Library/Keychains/System.keychain"

func keychainFind() []string {
	return []string{"security", "find-certificate", "-a", "-Z", SystemKeychain}
}

// keychainVerify evaluates the certificate in file as a trust anchor with
// the trust settings in force (security(1), verify-cert: -l the leaf is a
// CA, -L local certificates only, no network; -p basic, the X.509 policy
// with no host name). It succeeds only when an admin, user or system trust
// setting makes it a root: a copy in the keychain without one fails with
// CSSMERR_TP_NOT_TRUSTED.
func keychainVerify(file string) []string {
	return []string{"security", "verify-cert", "-c", file, "-p", "basic", "-l", "-L"}
}

func keychainAdd(file string) []string {
	return []string{"security", "add-trusted-cert", "-d", "-r", "trustRoot", "-k", SystemKeychain, file}
}

// keychainUntrust removes the admin trust setting that add-trusted-cert -d
// made; delete-certificate alone would leave it behind.
func keychainUntrust(file string) []string {
	return []string{"security", "remove-trusted-cert", "-d", file}
}

func keychainDelete(sha1 string) []string {
	return []string{"security", "delete-certificate", "-Z", sha1, SystemKeychain}
}

// launchctlManagerName names the launchd session of this process: "Aqua"
// in a logged-in desktop session (Terminal, also under sudo), "Background"
// over SSH, "System" for daemons (MDM, CI runners started by launchd).
func launchctlManagerName() []string { return []string{"launchctl", "managername"} }

// ErrNoDesktopSession reports that macOS cannot ask for the administrator
// confirmation a System keychain trust setting needs: since macOS 11
// (Big Sur), security add-trusted-cert -d shows a dialog even to root, and
// without a desktop session fails with "The authorization was denied since
// no user interaction was possible" (mkcert#415, actions/runner-images#4519).
var ErrNoDesktopSession = errors.New("no desktop session to confirm the trust setting in")

// Preflighter is a Store that can tell, before anything is spent, whether
// Install can work in this session (optional: the agent asks by type
// assertion).
type Preflighter interface {
	// Preflight returns an error wrapping ErrNoDesktopSession when Install
	// cannot succeed here, and otherwise a note on what Install will ask
	// of the user ("" for nothing).
	Preflight(ctx context.Context) (note string, err error)
}

// keychainStore is the macOS System keychain with an admin trust setting
// (trustRoot), driven by the security tool.
type keychainStore struct {
	thumbprintStore
	run     Runner
	tempDir string
}

// KeychainDialogNote is what the agent says before add-trusted-cert runs in
// a desktop session.
const KeychainDialogNote = "macOS asks for an administrator's password (or Touch ID) in a dialog to trust the device CA: confirm it at this Mac's screen"

func newKeychainStore(r Runner, tempDir string, log *slog.Logger) *keychainStore {
	k := &keychainStore{run: r, tempDir: tempDir}
	k.thumbprintStore = thumbprintStore{
		where: "macOS System keychain", log: log,
		trusted: k.trusted, held: k.held, add: k.add, remove: k.remove,
	}
	return k
}

// Preflight implements Preflighter. When launchctl cannot tell, it lets
// Install try (and its error says the same).
func (k *keychainStore) Preflight(ctx context.Context) (string, error) {
	out, err := run(ctx, k.run, launchctlManagerName())
	if err != nil {
		k.log.Debug("cannot tell the launchd session", "err", err)
		return KeychainDialogNote, nil
	}
	if name := strings.TrimSpace(string(out)); name != "Aqua" {
		return "", fmt.Errorf("trusting a CA in the macOS System keychain: %w (launchd session %q, not Aqua): "+
			"macOS 11 and later confirm it in a dialog, even for root; run edgecr join in Terminal at the Mac "+
			"(or over Screen Sharing), not over SSH or from a daemon", ErrNoDesktopSession, name)
	}
	return KeychainDialogNote, nil
}

func (k *keychainStore) held(ctx context.Context, c caCert) (bool, error) {
	out, err := run(ctx, k.run, keychainFind())
	if err != nil {
		return false, fmt.Errorf("querying macOS System keychain: %w", err)
	}
	return containsThumbprint(out, c.sha1), nil
}

// trusted: in the System keychain and trusted as a root. A copy without a
// trust setting (a plain import, a cancelled dialog) is not installed.
func (k *keychainStore) trusted(ctx context.Context, c caCert) (bool, error) {
	if ok, err := k.held(ctx, c); err != nil || !ok {
		return false, err
	}
	file, cleanup, err := stagePEM(k.tempDir, c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	out, err := run(ctx, k.run, keychainVerify(file))
	switch {
	case err == nil:
		return true, nil
	case bytes.Contains(out, []byte("Cert Verify Result:")):
		// A trust failure (CSSMERR_TP_NOT_TRUSTED, ...), not a tool failure.
		k.log.Debug("certificate not trusted", "output", strings.TrimSpace(string(out)))
		return false, nil
	default:
		return false, fmt.Errorf("checking the trust of the CA in macOS System keychain: %w", err)
	}
}

func (k *keychainStore) add(ctx context.Context, _ string, c caCert) error {
	file, cleanup, err := stagePEM(k.tempDir, c)
	if err != nil {
		return err
	}
	defer cleanup()
	argv := keychainAdd(file)
	k.log.Debug("adding trusted certificate", "argv", argv)
	out, err := run(ctx, k.run, argv)
	if err != nil && bytes.Contains(out, []byte("no user interaction was possible")) {
		return fmt.Errorf("%w: %w", ErrNoDesktopSession, err)
	}
	return err
}

// remove removes the admin trust setting, then the certificate itself
// (smallstep/truststore removes only the former).
func (k *keychainStore) remove(ctx context.Context, name string, c caCert) (bool, error) {
	file, cleanup, err := stagePEM(k.tempDir, c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	argv := keychainUntrust(file)
	k.log.Debug("removing trust setting", "argv", argv)
	if out, err := run(ctx, k.run, argv); err != nil && !bytes.Contains(out, []byte("could not be found")) && !bytes.Contains(out, []byte("No Trust Settings were found")) {
		if bytes.Contains(out, []byte("no user interaction was possible")) {
			// Removing an admin trust setting asks for an administrator too.
			err = fmt.Errorf("%w: run edgecr leave in Terminal at the Mac: %w", ErrNoDesktopSession, err)
		}
		return false, fmt.Errorf("removing %s from macOS trust settings: %w", name, err)
	}
	argv = keychainDelete(c.sha1)
	k.log.Debug("deleting certificate", "argv", argv)
	if _, err := run(ctx, k.run, argv); err != nil {
		return true, fmt.Errorf("removing %s from macOS System keychain: %w", name, err)
	}
	return true, nil
}
