package trust

import (
	"context"
	"fmt"
	"log/slog"
)

// thumbprintStore is a machine store that identifies a certificate by its
// SHA-1 thumbprint and is driven by a command: the macOS System keychain
// (security) and the Windows LocalMachine Root store (certutil). The name
// is not recorded. What differs between them is in the funcs.
type thumbprintStore struct {
	where   string // what error messages call the store
	addMsg  string // the debug line of an add
	run     Runner
	tempDir string
	log     *slog.Logger

	// present reports whether the store holds c.
	present func(ctx context.Context, s *thumbprintStore, c caCert) (bool, error)
	// add is the command that adds the certificate in file.
	add func(file string) []string
	// remove takes out c, which present found; removed says whether the
	// store changed, also on error.
	remove func(ctx context.Context, s *thumbprintStore, name string, c caCert) (removed bool, err error)
}

// Installed implements Store. Reading either store needs no privileges.
func (s *thumbprintStore) Installed(ctx context.Context, name string, pem []byte) (bool, error) {
	c, err := s.parse(name, pem)
	if err != nil {
		return false, err
	}
	return s.present(ctx, s, c)
}

// Install implements Store.
func (s *thumbprintStore) Install(ctx context.Context, name string, pem []byte) (bool, error) {
	c, err := s.parse(name, pem)
	if err != nil {
		return false, err
	}
	if ok, err := s.present(ctx, s, c); err != nil || ok {
		return false, err
	}
	file, cleanup, err := stagePEM(s.tempDir, c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	argv := s.add(file)
	s.log.Debug(s.addMsg, "argv", argv)
	if _, err := run(ctx, s.run, argv); err != nil {
		return false, fmt.Errorf("installing %s into %s: %w", name, s.where, err)
	}
	return true, nil
}

// Uninstall implements Store.
func (s *thumbprintStore) Uninstall(ctx context.Context, name string, pem []byte) (bool, error) {
	c, err := s.parse(name, pem)
	if err != nil {
		return false, err
	}
	if ok, err := s.present(ctx, s, c); err != nil || !ok {
		return false, err
	}
	return s.remove(ctx, s, name, c)
}

func (s *thumbprintStore) parse(name string, pem []byte) (caCert, error) {
	if err := checkName(name); err != nil {
		return caCert{}, err
	}
	return parseCA(pem)
}
