package trust

import (
	"context"
	"fmt"
	"log/slog"
)

// thumbprintStore is a machine store that identifies a certificate by its
// SHA-1 thumbprint: the macOS System keychain with its admin trust settings
// (security) and the Windows LocalMachine Root store (crypt32). The name is
// not recorded. What differs between them is in the funcs.
type thumbprintStore struct {
	where string // what error messages call the store
	log   *slog.Logger

	// trusted reports whether the store holds c and trusts it as a root:
	// what Installed answers, and what Install makes true.
	trusted func(ctx context.Context, c caCert) (bool, error)
	// held reports whether the store holds c at all, trusted or not: what
	// Uninstall takes away.
	held func(ctx context.Context, c caCert) (bool, error)
	// add adds c and trusts it; a copy already there is fine.
	add func(ctx context.Context, name string, c caCert) error
	// remove takes out c, which held found; removed says whether the
	// store changed, also on error.
	remove func(ctx context.Context, name string, c caCert) (removed bool, err error)
}

// Installed implements Store: the certificate is there and trusted.
// Reading either store needs no privileges.
func (s *thumbprintStore) Installed(ctx context.Context, name string, pem []byte) (bool, error) {
	c, err := s.parse(name, pem)
	if err != nil {
		return false, err
	}
	return s.trusted(ctx, c)
}

// Install implements Store. A copy that is present but not trusted (an
// earlier plain import, a cancelled dialog) is trusted now.
func (s *thumbprintStore) Install(ctx context.Context, name string, pem []byte) (bool, error) {
	c, err := s.parse(name, pem)
	if err != nil {
		return false, err
	}
	if ok, err := s.trusted(ctx, c); err != nil || ok {
		return false, err
	}
	if err := s.add(ctx, name, c); err != nil {
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
	if ok, err := s.held(ctx, c); err != nil || !ok {
		return false, err
	}
	return s.remove(ctx, name, c)
}

func (s *thumbprintStore) parse(name string, pem []byte) (caCert, error) {
	if err := checkName(name); err != nil {
		return caCert{}, err
	}
	return parseCA(pem)
}
