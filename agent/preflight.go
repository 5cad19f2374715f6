package agent

import (
	"context"
	"fmt"

	"github.com/edgecr/edgecr/trust"
)

// preflightTrust asks the OS trust store, before the token is spent,
// whether installing caPEM can work in this session (macOS: a desktop
// session for the trust dialog); a CA the store trusts already needs
// nothing. It returns what to tell the user right before the install (""
// for nothing). A store it cannot open or query is left to the trust step,
// which reports it.
func (s *System) preflightTrust(ctx context.Context, e *Entry, caPEM []byte) (string, error) {
	if e != nil && e.Done(StepTrust) {
		return "", nil
	}
	var kind trust.Kind
	if e != nil && e.Trust != nil {
		kind = e.Trust.Kind
	}
	store, _, err := s.OpenTrust(kind)
	if err != nil {
		return "", nil //nolint:nilerr // the trust step reports it
	}
	p, ok := store.(trust.Preflighter)
	if !ok {
		return "", nil
	}
	// The stores that preflight find the CA by its thumbprint; the name
	// only has to be valid.
	name := "edgecr-device"
	if e != nil && e.Trust != nil {
		name = e.Trust.Name
	}
	if had, err := store.Installed(ctx, name, caPEM); err == nil && had {
		return "", nil
	}
	note, err := p.Preflight(ctx)
	if err != nil {
		return "", fmt.Errorf("%w (the join token was not spent)", err)
	}
	return note, nil
}
