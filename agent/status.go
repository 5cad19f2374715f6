package agent

import (
	"context"
	"fmt"
	"strings"
)

// RegistryStatus is the health of one joined registry, hop by hop; `edgecr
// status -o json` prints a list of them.
type RegistryStatus struct {
	Registry string  `json:"registry"`
	ClientID string  `json:"clientID"`
	Checks   []Check `json:"checks"`
}

// OK reports whether every hop works.
func (r RegistryStatus) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// Status checks every hop between this client and each joined registry:
// the join completed, the hosts entry, name resolution, the CA in the OS
// trust store and in each runtime configured, TLS with the system roots
// (under --root: the bundle the trust step wrote), the Docker config, the
// helper on PATH, the helper's credential, and the registry accepting it.
// It changes nothing and takes no lock. With nothing joined it returns
// ErrNotJoined.
func (s *System) Status(ctx context.Context) ([]RegistryStatus, error) {
	st, err := s.State.Load()
	if err != nil {
		return nil, err
	}
	if len(st.Registries) == 0 {
		return nil, fmt.Errorf("%w to any registry (no entry in %s): run `edgecr join URL --token TOKEN`", ErrNotJoined, s.State.Path())
	}
	var out []RegistryStatus
	for _, e := range st.Registries {
		out = append(out, s.status(ctx, e))
	}
	return out, nil
}

func (s *System) status(ctx context.Context, e *Entry) RegistryStatus {
	r := RegistryStatus{Registry: e.Registry, ClientID: e.ClientID}
	if e.Complete() {
		r.Checks = append(r.Checks, ok(CheckJoin, fmt.Sprintf("joined as %s (role %s) via %s", e.ClientID, e.Role, e.DeviceURL)))
	} else {
		done := "none"
		if len(e.Steps) > 0 {
			done = strings.Join(e.Steps, ", ")
		}
		r.Checks = append(r.Checks, broken(CheckJoin, "the join did not finish (steps done: "+done+")",
			rejoinFix(e)+", or run `edgecr leave` to undo it"))
	}
	r.Checks = append(r.Checks, s.checkHosts(ctx, e), s.checkResolve(ctx, e), s.checkTrustStore(ctx, e))
	r.Checks = append(r.Checks, s.checkRuntimes(ctx, e)...)
	r.Checks = append(r.Checks, s.checkBrowsers(ctx, e)...)
	dc := s.checkDockerConfig(e)
	r.Checks = append(r.Checks, s.checkTLS(ctx, e), dc)
	found, got, user, secret := s.checkHelper(ctx, e)
	reg := s.checkRegistry(ctx, e, user, secret)
	if !dc.OK && strings.HasPrefix(dc.Fix, "this user may not read") {
		// The credential is the other user's too: its checks fail for
		// the same reason, and rejoining is not the repair.
		for _, c := range []*Check{&got, &reg} {
			if !c.OK {
				c.Fix = dc.Fix
			}
		}
	}
	r.Checks = append(r.Checks, found, got, reg)
	for _, m := range mirrorStatus(e.Mirror) {
		name := fmt.Sprintf("mirror of %s (%s)", m.Registry, m.Kind)
		if m.InForce {
			r.Checks = append(r.Checks, ok(name, m.Path+" "+m.Detail))
		} else {
			r.Checks = append(r.Checks, broken(name, m.Path+" "+m.Detail, rejoinFix(e)+" --mirror "+m.Registry))
		}
	}
	return r
}
