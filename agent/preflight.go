package agent

import (
	"context"
	"fmt"

	"github.com/edgecr/edgecr/trust"
)

// preflightTrust asks the OS trust store, before the token is spent,
// whether installing the CA can work in this session (macOS: a desktop
// session for the trust dialog). It returns what to tell the user right
// before the install ("" for nothing). A store it cannot open is left to
// the trust step, which reports it.
func (s *System) preflightTrust(ctx context.Context, e *Entry) (string, error) {
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
	note, err := p.Preflight(ctx)
	if err != nil {
		return "", fmt.Errorf("%w (the join token was not spent)", err)
	}
	return note, nil
}
