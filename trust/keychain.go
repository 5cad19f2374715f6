package trust

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
)

// SystemKeychain is the macOS keychain that holds machine-wide roots.
const SystemKeychain = "/Library/Keychains/System.keychain"

func keychainFind() []string {
	return []string{"security", "find-certificate", "-a", "-Z", SystemKeychain}
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

// newKeychainStore is the macOS System keychain with an admin trust
// setting (trustRoot), driven by the security tool.
func newKeychainStore(r Runner, tempDir string, log *slog.Logger) *thumbprintStore {
	return &thumbprintStore{
		where: "macOS System keychain", addMsg: "adding trusted certificate",
		run: r, tempDir: tempDir, log: log,
		present: keychainPresent,
		add:     keychainAdd,
		remove:  keychainRemove,
	}
}

func keychainPresent(ctx context.Context, s *thumbprintStore, c caCert) (bool, error) {
	out, err := run(ctx, s.run, keychainFind())
	if err != nil {
		return false, fmt.Errorf("querying macOS System keychain: %w", err)
	}
	return containsThumbprint(out, c.sha1), nil
}

// keychainRemove removes the admin trust setting, then the certificate
// itself (smallstep/truststore removes only the former).
func keychainRemove(ctx context.Context, s *thumbprintStore, name string, c caCert) (bool, error) {
	file, cleanup, err := stagePEM(s.tempDir, c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	argv := keychainUntrust(file)
	s.log.Debug("removing trust setting", "argv", argv)
	if out, err := run(ctx, s.run, argv); err != nil && !bytes.Contains(out, []byte("could not be found")) {
		return false, fmt.Errorf("removing %s from macOS trust settings: %w", name, err)
	}
	argv = keychainDelete(c.sha1)
	s.log.Debug("deleting certificate", "argv", argv)
	if _, err := run(ctx, s.run, argv); err != nil {
		return true, fmt.Errorf("removing %s from macOS System keychain: %w", name, err)
	}
	return true, nil
}
