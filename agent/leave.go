package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/trust"
)

// ErrNotJoined means the state records no joined registry (or not the one
// asked for).
var ErrNotJoined = errors.New("not joined")

// LeaveOptions are the inputs of Leave.
type LeaveOptions struct {
	// Registry is the host:port to leave; "" leaves every joined registry.
	Registry string
	Report   func(Event)
}

// LeaveResult is what leaving one registry did; `edgecr leave -o json`
// prints a list of them.
type LeaveResult struct {
	Registry string  `json:"registry"`
	ClientID string  `json:"clientID"`
	Revoked  bool    `json:"revoked"`
	Done     bool    `json:"done"` // everything undone and the entry removed
	Events   []Event `json:"events"`
}

// Leave revokes this client on each joined device (when reachable; a device
// that is not is a warning) and undoes, in reverse, what join recorded:
// Docker config, credential, runtimes, OS trust store, hosts entry. Each
// undo is saved as it is done; one that fails keeps its record (and the
// entry) for the next leave, and the others still run. With nothing joined
// it returns no results and no error.
func (s *System) Leave(ctx context.Context, o LeaveOptions) ([]LeaveResult, error) {
	release, err := s.State.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := s.State.Load()
	if err != nil {
		return nil, err
	}
	var entries []*Entry
	if o.Registry != "" {
		e := st.Find(o.Registry)
		if e == nil {
			return nil, fmt.Errorf("leaving %s: %w to it", o.Registry, ErrNotJoined)
		}
		entries = []*Entry{e}
	} else {
		entries = append(entries, st.Registries...)
	}
	results := []LeaveResult{}
	var errs []error
	for _, e := range entries {
		rep := &reporter{report: o.Report}
		r := LeaveResult{Registry: e.Registry, ClientID: e.ClientID}
		revoked, err := s.undoWithRevoke(ctx, st, e, rep, undoLeave)
		r.Revoked = revoked
		r.Done = err == nil
		r.Events = rep.events
		if r.Events == nil {
			r.Events = []Event{}
		}
		results = append(results, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("leaving %s: %w", e.Registry, err))
		}
	}
	return results, errors.Join(errs...)
}

type undoMode int

const (
	undoLeave    undoMode = iota // leave: revoke first, report "removed"
	undoRollback                 // failed join: reverse order, revoke last
)

func (s *System) undo(ctx context.Context, st *State, e *Entry, rep *reporter, mode undoMode) error {
	_, err := s.undoWithRevoke(ctx, st, e, rep, mode)
	return err
}

// undoWithRevoke takes back everything e records, saving st after each
// piece, and removes e when all is undone.
func (s *System) undoWithRevoke(ctx context.Context, st *State, e *Entry, rep *reporter, mode undoMode) (revoked bool, err error) {
	step := "leave"
	done := StatusChanged
	if mode == undoRollback {
		step, done = "rollback", StatusUndone
	}
	unchanged := func(item, detail string) {
		if mode == undoLeave { // a rollback reports only what it took back
			rep.emit(step, item, StatusUnchanged, detail)
		}
	}
	save := func() error {
		e.UpdatedAt = s.Now().UTC()
		return s.State.Save(st)
	}
	user, secret, haveCred := s.storedCredential(e)
	if mode == undoLeave {
		revoked = s.revoke(ctx, e, user, secret, haveCred, rep, step)
	}
	// The entry no longer describes a complete join from here on.
	e.Steps = nil
	if err := save(); err != nil {
		return revoked, err
	}

	var errs []error
	if err := s.undoMirror(ctx, e, rep, step, done); err != nil {
		errs = append(errs, err)
	}
	if r := e.DockerConfig; r != nil {
		applied := true
		var err error
		if r.Pending {
			// Recorded before the write, which a crash may have stopped.
			applied, err = s.Docker.Applied(r.Path, r.Change)
		}
		var changed bool
		switch {
		case err != nil:
		case !applied:
			removeEmptyDirs(r.Change.CreatedDirs)
		default:
			changed, err = s.Docker.Unregister(r.Path, r.Change)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			e.DockerConfig = nil
			if changed {
				rep.emit(step, "docker config", done, fmt.Sprintf("removed credHelpers[%q] from %s", e.Registry, r.Path))
			} else {
				unchanged("docker config", fmt.Sprintf("unchanged: nothing of edgecr's left for %s in %s", e.Registry, r.Path))
			}
		}
	}
	if r := e.Credential; r != nil {
		if err := s.eraseCredential(r); err != nil {
			errs = append(errs, err)
		} else {
			e.Credential = nil
			rep.emit(step, "credential", done, fmt.Sprintf("erased the credential for %s from %s", r.Key, r.Path))
		}
	}
	if err := s.undoBrowsers(ctx, e, rep, step, done); err != nil {
		errs = append(errs, err)
	}
	if r := e.Runtimes; r != nil {
		kept, err := s.Runtimes.Uninstall(ctx, *r)
		for _, k := range kept {
			rep.emit(step, "runtimes", StatusWarning, "left in place: "+k)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			e.Runtimes = nil
			if len(r.Files) > 0 || r.K3s != nil || len(r.Dirs) > 0 {
				rep.emit(step, "runtimes", done, fmt.Sprintf("removed %s's CA from %s", e.Registry, joinRuntimes(r.Runtimes)))
			}
		}
	}
	if r := e.Trust; r != nil && !r.Installed {
		// The CA was in the store before join: it is the user's, and stays.
		e.Trust = nil
		unchanged("trust store", fmt.Sprintf("left in place: the %s trust store held the CA %s before join", r.Kind, r.Name))
	}
	if r := e.Trust; r != nil {
		store, kind, err := s.OpenTrust(r.Kind)
		if err == nil {
			var changed bool
			changed, err = store.Uninstall(ctx, r.Name, []byte(e.CAPEM))
			if err == nil {
				e.Trust = nil
				if changed {
					rep.emit(step, "trust store", done, fmt.Sprintf("removed the CA %s from the %s trust store", r.Name, kind))
				} else {
					unchanged("trust store", fmt.Sprintf("unchanged: the %s trust store does not hold %s", kind, r.Name))
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing the CA from the trust store: %w", err))
		}
	}
	if r := e.Hosts; r != nil && hostsfile.CheckHost(r.Host) != nil {
		// The hosts file takes no such name, so none of edgecr's lines can
		// hold it: a state that records one (hand-edited, or written from a
		// hostile answer by an older edgecr) must not wedge leave.
		e.Hosts = nil
		unchanged("hosts", fmt.Sprintf("unchanged: %q is not a valid host name, so %s holds no edgecr entry for it", r.Host, r.Path))
	}
	if r := e.Hosts; r != nil {
		changed, err := s.Hosts(r.Path).Remove(ctx, r.Host)
		if err != nil {
			errs = append(errs, fmt.Errorf("removing %s from %s: %w", r.Host, r.Path, err))
		} else {
			e.Hosts = nil
			if changed {
				shown := r.IP
				if len(r.IPs) > 1 {
					shown = strings.Join(r.IPs, ", ")
				}
				rep.emit(step, "hosts", done, fmt.Sprintf("removed %s %s from %s", shown, r.Host, r.Path))
			} else {
				unchanged("hosts", fmt.Sprintf("unchanged: %s has no edgecr entry for %s", r.Path, r.Host))
			}
		}
	}
	if err := save(); err != nil {
		errs = append(errs, err)
	}
	if mode == undoRollback {
		revoked = s.revoke(ctx, e, user, secret, haveCred, rep, step)
	}
	if len(errs) > 0 {
		return revoked, errors.Join(errs...)
	}
	e.PendingSecret = ""
	st.remove(e.Registry)
	return revoked, s.State.Save(st)
}

func joinRuntimes(rts []trust.Runtime) string {
	var s []string
	for _, rt := range rts {
		s = append(s, string(rt))
	}
	if len(s) == 0 {
		return "no runtime"
	}
	return strings.Join(s, ", ")
}

// revoke asks the device to revoke the client. Failing to reach it is a
// warning: the local undo goes on regardless.
func (s *System) revoke(ctx context.Context, e *Entry, user string, secret Secret, have bool, rep *reporter, step string) bool {
	if e.DeviceURL == "" || e.Pin == "" {
		return false
	}
	adminFix := fmt.Sprintf("it stays valid on the device until an admin runs `edgecrd clients revoke %s`", e.ClientID)
	if !have {
		rep.emit(step, "device", StatusWarning, fmt.Sprintf("no credential of %s is stored, so it cannot revoke itself: %s", e.ClientID, adminFix))
		return false
	}
	base, err := ParseDeviceURL(e.DeviceURL)
	if err != nil {
		rep.emit(step, "device", StatusWarning, fmt.Sprintf("%v: %s", err, adminFix))
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// A device with replicas: when the one joined through does not answer,
	// any other can revoke (they share the state).
	for _, u := range revokeURLs(base, e) {
		client := NewDeviceClient(u, e.Pin)
		_ = client.AcceptReissuedCA([]byte(e.CAPEM)) // a device whose CA was re-issued under the same key
		err = client.Revoke(ctx, user, secret)
		client.Close()
		var apiErr *APIError
		if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil {
			break
		}
	}
	switch {
	case err == nil:
		rep.emit(step, "device", StatusChanged, fmt.Sprintf("revoked %s on %s", e.ClientID, e.DeviceURL))
		return true
	case errors.Is(err, ErrCredentialRejected):
		rep.emit(step, "device", StatusUnchanged, fmt.Sprintf("unchanged: %s no longer knows %s (already revoked)", e.DeviceURL, e.ClientID))
		return true
	default:
		rep.emit(step, "device", StatusWarning, fmt.Sprintf("could not revoke %s: %v; %s", e.ClientID, unwrapURLError(err), adminFix))
		return false
	}
}

// revokeURLs is base, then the same port at each other replica address of e.
func revokeURLs(base *url.URL, e *Entry) []*url.URL {
	out := []*url.URL{base}
	for _, a := range e.Addresses() {
		if a == "" || a == base.Hostname() {
			continue
		}
		out = append(out, &url.URL{Scheme: base.Scheme, Host: net.JoinHostPort(a, base.Port())})
	}
	return out
}

// removeEmptyDirs removes dirs (outermost first), innermost first, each
// only if it is empty.
func removeEmptyDirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // fails, as it should, unless empty
	}
}

// eraseCredential deletes the credential and, when join created the
// credentials file (and its directory) and nothing else is left in it,
// removes them.
func (s *System) eraseCredential(r *CredentialRecord) error {
	store := s.Credentials(r.Path)
	if err := store.Delete(r.Key); err != nil {
		return fmt.Errorf("erasing the credential for %s from %s: %w", r.Key, r.Path, err)
	}
	if r.FileExisted {
		return nil
	}
	left, err := store.List()
	if err != nil || len(left) > 0 {
		return nil
	}
	for _, p := range []string{r.Path, r.Path + ".lock"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	for i := len(r.CreatedDirs) - 1; i >= 0; i-- {
		_ = os.Remove(r.CreatedDirs[i]) // only if empty
	}
	return nil
}
