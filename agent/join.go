package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/internal/textsafe"
	"github.com/edgecr/edgecr/trust"
)

// JoinOptions are the inputs of Join.
type JoinOptions struct {
	URL   string // https://<device>:31001
	Token string // edgecr1.<pin>.<id>.<secret>
	Name  string // the client's name on the device
	// Browsers also adds the CA to the user's browsers' NSS databases
	// (Linux: Chromium, Firefox); a rerun of such a join does it again.
	Browsers bool
	// Report receives each event as it happens (nil: none).
	Report func(Event)
	// AllowUnconstrainedCA accepts a device CA without critical name
	// constraints (an edgecrd that predates them); see CheckDeviceCA.
	AllowUnconstrainedCA bool
	// AllowDomains are zones in the public DNS the device CA may be
	// constrained to (--allow-domain); see CheckDeviceCA.
	AllowDomains []string
	// ReplaceCredentials lets the join replace another tool's
	// credHelpers entry for the registry (and shadow its auths entry);
	// without it the join refuses before writing anything.
	ReplaceCredentials bool
	// Retry bounds how long the join waits out a device that answers 429
	// or 503, saying each time what it waits for; zero is DefaultRetry.
	Retry RetryPolicy
	// AfterStep runs after each step's state has been saved. An error from
	// it stops the join as a crash would: nothing is rolled back. It is the
	// test hook behind EDGECR_TEST_CRASH_AFTER.
	AfterStep func(step string) error
	// Mirrors are the registries (docker.io, ...) whose pulls the runtimes
	// found here send to the device's mirror listener first, at
	// MirrorPort (0: DefaultMirrorPort); see mirror.go.
	Mirrors    []string
	MirrorPort int
}

// JoinResult is what a join did; `edgecr join -o json` prints it. It holds
// no secret.
type JoinResult struct {
	Registry      string   `json:"registry"`
	Host          string   `json:"host"`
	Port          int      `json:"port"`
	IP            string   `json:"ip"`
	Addrs         []string `json:"addrs,omitempty"` // every replica's, IP first; absent for one address
	DeviceURL     string   `json:"deviceURL"`
	CAFingerprint string   `json:"caFingerprint"`
	ClientID      string   `json:"clientID"`
	Username      string   `json:"username"`
	Role          string   `json:"role"`
	AlreadyJoined bool     `json:"alreadyJoined"`
	Events        []Event  `json:"events"`
	Notices       []string `json:"notices"`
	Warnings      []string `json:"warnings"`
}

// haltError marks an AfterStep stop: the join ends as a crash would, with
// no rollback, and the caller sees the hook's error.
type haltError struct{ err error }

func (h *haltError) Error() string { return h.err.Error() }
func (h *haltError) Unwrap() error { return h.err }

// Join puts this client on the device's registry: the five steps of
// DESIGN.md, in order, each idempotent and reported as it happens, with the
// state saved after each so that a rerun after a crash converges and
// `leave` undoes exactly what was done.
//
// A join that fails undoes, in reverse, everything its registry's entry
// records (revoking the new client on the device last), unless the entry
// was a completed join before this run (then the earlier join stays as it
// was), or it was there from an earlier, interrupted run and this one failed
// in the bootstrap, changing nothing (then it is kept for a retry or for
// leave).
//
// A second join of a device whose client credential still works does not
// spend the token: it reports "already joined" and re-converges the other
// steps.
func (s *System) Join(ctx context.Context, o JoinOptions) (*JoinResult, error) {
	tok, err := ParseToken(o.Token)
	if err != nil {
		return nil, err
	}
	base, err := ParseDeviceURL(o.URL)
	if err != nil {
		return nil, err
	}
	if err := textsafe.Check("client name", o.Name); err != nil {
		return nil, err
	}
	// Refuse before the token is spent what would fail later anyway.
	if err := s.Docker.Check(); err != nil {
		return nil, err
	}
	if s.User.Sudo && s.CredentialsPath != "" {
		if err := credhelper.CheckPath(s.CredentialsPath, s.User.fileOptions()...); err != nil {
			return nil, fmt.Errorf("checking the credentials file: %w", err)
		}
	}
	release, err := s.State.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := s.State.Load()
	if err != nil {
		return nil, err
	}
	j := &joinRun{System: s, o: o, tok: tok, base: base, st: st, rep: &reporter{report: o.Report}}
	j.e = st.FindPin(tok.Pin)
	existed := j.e != nil
	wasComplete := existed && j.e.Complete()
	err = j.run(ctx)
	res := j.result()
	if err == nil {
		return res, nil
	}
	var halt *haltError
	switch {
	case errors.As(err, &halt), j.e == nil, wasComplete:
		return res, err
	case existed && j.failed == StepBootstrap:
		// A rerun that could not get going (the device unreachable, say)
		// changed nothing: keep what the earlier run did, and its
		// credential, whose token is spent, for the next try or for leave.
		return res, err
	}
	// Undo even when the join failed because ctx ended (Ctrl-C): the
	// rollback gets a context of its own, bounded.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if uerr := s.undo(rctx, st, j.e, j.rep, undoRollback); uerr != nil {
		err = fmt.Errorf("%w (undoing the join: %w; run `edgecr leave` to finish)", err, uerr)
	}
	res.Events = j.rep.events
	return res, err
}

// rollbackTimeout bounds the undo of a failed join.
const rollbackTimeout = 2 * time.Minute

type joinRun struct {
	*System
	o    JoinOptions
	tok  Token
	base *url.URL
	st   *State
	e    *Entry
	rep  *reporter

	already  bool
	failed   string // the step that failed
	notices  []string
	warnings []string

	trustNote     string // said before the CA is installed (the macOS dialog)
	dockerChanged bool   // the trust step wrote Docker's certs.d
}

func (j *joinRun) run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{StepBootstrap, j.bootstrap},
		{StepHosts, j.hosts},
		{StepTrust, j.trust},
		{StepCredentials, j.credentials},
		{StepVerify, j.verify},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step.fn(ctx); err != nil {
			j.failed = step.name
			if j.e != nil {
				_ = j.save() // keep what the step recorded, for the rollback
			}
			return err
		}
		j.e.markDone(step.name)
		if err := j.save(); err != nil {
			return err
		}
		if j.o.AfterStep != nil {
			if err := j.o.AfterStep(step.name); err != nil {
				return &haltError{err: err}
			}
		}
	}
	if err := j.mirror(ctx); err != nil {
		j.failed = "mirror"
		_ = j.save()
		return err
	}
	return nil
}

func (j *joinRun) save() error {
	j.e.UpdatedAt = j.Now().UTC()
	j.st.put(j.e)
	return j.State.Save(j.st)
}

func (j *joinRun) emit(step, item string, st Status, detail string) {
	switch st {
	case StatusWarning:
		j.warnings = append(j.warnings, item+": "+detail)
	case StatusNotice:
		j.notices = append(j.notices, detail)
	}
	j.rep.emit(step, item, st, detail)
}

func (j *joinRun) result() *JoinResult {
	r := &JoinResult{
		DeviceURL:     j.base.String(),
		AlreadyJoined: j.already,
		Events:        j.rep.events,
		Notices:       j.notices,
		Warnings:      j.warnings,
	}
	if e := j.e; e != nil {
		r.Registry, r.Host, r.Port, r.IP, r.Addrs = e.Registry, e.Host, e.Port, e.IP, e.Addrs
		r.CAFingerprint = "sha256:" + e.Pin
		r.ClientID, r.Username, r.Role = e.ClientID, e.Username, e.Role
	}
	if r.Events == nil {
		r.Events = []Event{}
	}
	if r.Notices == nil {
		r.Notices = []string{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	return r
}

// chooseIP is the address the hosts entry maps the registry to: the join
// URL's host when it is an IP (the address this client demonstrably
// reaches), else the first the device advertises.
func chooseIP(base *url.URL, advertised []string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(base.Hostname()); err == nil {
		return a.Unmap(), nil
	}
	for _, s := range advertised {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("choosing the device's address: the join URL names no IP and the device advertises none: join by IP (https://<device IP>:%d)", DefaultPort)
}

// replicaAddrs is every address the hosts entry maps the registry to: first,
// then each replica address the device named (valid, distinct), or nil
// when that is first alone (a single node: the entry stays as it was).
func replicaAddrs(first netip.Addr, replicas []string) []string {
	out := []string{first.String()}
	for _, s := range replicas {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			continue
		}
		if a = a.Unmap(); !slices.Contains(out, a.String()) {
			out = append(out, a.String())
		}
	}
	if len(out) == 1 {
		return nil
	}
	return out
}

// bootstrap: pinned TLS, then the join request (or, when this device's
// client credential still works, nothing at all).
func (j *joinRun) bootstrap(ctx context.Context) error {
	client := NewDeviceClient(j.base, j.tok.Pin)
	defer client.Close()
	note := func(msg string) { j.emit(StepBootstrap, "bootstrap", StatusWarning, msg) }

	if e := j.e; e != nil && e.Done(StepBootstrap) {
		if user, secret, found := j.storedCredential(e); found {
			err := withRetry(ctx, j.o.Retry, "checking the credential", note, func() error {
				return client.CheckCredential(ctx, user, secret)
			})
			switch {
			case err == nil:
				j.already = true
				if ip, err := chooseIP(j.base, []string{e.IP}); err == nil {
					e.IP = ip.String()
				}
				// The replica set may have changed since: take the
				// device's current one (a device without replicas keeps
				// what was recorded).
				if addrs, found, err := client.Replicas(ctx); err != nil {
					j.emit(StepBootstrap, "replicas", StatusWarning, fmt.Sprintf("keeping the recorded addresses: %v", err))
				} else if found {
					e.Addrs = replicaAddrs(netip.MustParseAddr(e.IP), addrs)
				}
				e.DeviceURL = j.base.String()
				j.emit(StepBootstrap, "bootstrap", StatusUnchanged, fmt.Sprintf("already joined as %s: %s accepts its credential (token not spent)", e.ClientID, e.Registry))
				return nil
			case errors.Is(err, ErrCredentialRejected):
				j.emit(StepBootstrap, "bootstrap", StatusWarning, fmt.Sprintf("the device no longer accepts %s: joining again with the token", e.ClientID))
			default:
				return fmt.Errorf("checking whether %s is still joined: %w", e.Registry, err)
			}
		}
	}

	// The handshake proves the pin before anything is sent; the CA the
	// device serves must be the pinned one too, and one that vouches only
	// for the device's own names.
	var caPEM []byte
	err := withRetry(ctx, j.o.Retry, "fetching the device CA", note, func() (err error) {
		caPEM, err = client.FetchCA(ctx)
		return err
	})
	if err != nil {
		return err
	}
	ca, err := j.checkCA(caPEM)
	if err != nil {
		return fmt.Errorf("%w (the join token was not spent)", err)
	}
	// The device certificate names the registry host (as for --dry-run):
	// a join the hosts or credentials step would refuse does not spend the
	// token.
	if names := client.ServerNames(); len(names) > 0 {
		if err := j.refuseHostsConflict(ctx, names[0]); err != nil {
			return err
		}
		if err := j.refuseForeignCredentials(net.JoinHostPort(names[0], j.base.Port()), false); err != nil {
			return fmt.Errorf("%w (the join token was not spent)", err)
		}
	}
	// Whether this session can install the CA (macOS: the trust dialog
	// needs a desktop) is asked now that the CA is known, so that a CA the
	// machine trusts already (MDM) needs no desktop.
	if j.trustNote, err = j.preflightTrust(ctx, j.e, caPEM); err != nil {
		return err
	}
	// A 429 or 503 spends no use of the token: the device answers them
	// before it looks at it.
	var resp *JoinResponse
	err = withRetry(ctx, j.o.Retry, "joining", note, func() (err error) {
		resp, err = client.Join(ctx, j.tok, j.o.Name)
		return err
	})
	if err != nil {
		return err
	}
	registry := net.JoinHostPort(resp.RegistryHost, strconv.Itoa(resp.Port))
	// Nothing the device answered is recorded (or printed) before it is
	// checked.
	err = CheckIdentity(resp.ClientID, resp.Username, resp.Role)
	if err == nil {
		err = CheckRegistryHost(ca, client.Peer(), resp.RegistryHost)
	}
	if err == nil {
		err = j.refuseForeignCredentials(registry, true)
	}
	var ip netip.Addr
	if err == nil {
		ip, err = chooseIP(j.base, resp.IPs)
	}
	if err == nil {
		if other := j.st.Find(registry); other != nil && other.Pin != j.tok.Pin {
			err = fmt.Errorf("registry %s is already joined with another device CA (sha256:%s): run `edgecr leave %s` first", registry, other.Pin, registry)
		} else if j.e != nil && j.e.Registry != registry {
			err = fmt.Errorf("this device was joined as %s but now serves %s: run `edgecr leave %s` first", j.e.Registry, registry, j.e.Registry)
		}
	}
	if err != nil {
		// The token is spent: do not leave a client behind on the device.
		_ = client.Revoke(ctx, resp.Username, resp.Password)
		return err
	}
	now := j.Now().UTC()
	e := j.e
	if e == nil {
		e = &Entry{Registry: registry, JoinedAt: now}
		j.e = e
	}
	e.Host, e.Port, e.IP = resp.RegistryHost, resp.Port, ip.String()
	e.Addrs = replicaAddrs(ip, resp.Replicas)
	e.DeviceURL, e.Pin, e.CAPEM = j.base.String(), j.tok.Pin, resp.CAPEM
	e.ClientID, e.Username, e.Role, e.Name = resp.ClientID, resp.Username, resp.Role, j.o.Name
	e.PendingSecret = resp.Password.reveal()
	role := resp.Role
	if role == "" {
		role = "unknown"
	}
	j.emit(StepBootstrap, "bootstrap", StatusChanged, fmt.Sprintf("joined %s as %s (role %s); the device CA sha256:%s matches the token's pin", registry, resp.ClientID, role, j.tok.Pin[:16]+"…"))
	return nil
}

// checkCA parses the pinned CA and checks its name constraints
// (CheckDeviceCA); an unconstrained CA accepted with
// --allow-unconstrained-ca is a warning.
func (j *joinRun) checkCA(caPEM []byte) (*x509.Certificate, error) {
	der, _, err := ParseCAPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("checking the device CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("checking the device CA: %w", err)
	}
	var ips []netip.Addr
	if a, err := netip.ParseAddr(j.base.Hostname()); err == nil {
		ips = append(ips, a.Unmap())
	}
	warn, err := CheckDeviceCA(ca, ips, j.o.AllowUnconstrainedCA, j.o.AllowDomains)
	if err != nil {
		return nil, err
	}
	if warn != nil {
		j.emit(StepBootstrap, "device CA", StatusWarning, "accepted with --allow-unconstrained-ca: "+warn.Error())
	}
	return ca, nil
}

// refuseForeignCredentials fails, unless --replace-credentials, when
// config.json has another tool's entry for registry, saying what it found.
func (j *joinRun) refuseForeignCredentials(registry string, report bool) error {
	found, err := j.Docker.Foreign(registry)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	if j.o.ReplaceCredentials {
		if !report {
			return nil
		}
		j.emit(StepCredentials, "docker config", StatusWarning, fmt.Sprintf("replacing %s in %s (--replace-credentials); leave puts a replaced helper back", strings.Join(found, ", "), j.Docker.Path()))
		return nil
	}
	return fmt.Errorf("%w: %s already has %s: edgecr would replace it; run with --replace-credentials to do so", ErrForeignCredentials, j.Docker.Path(), strings.Join(found, ", "))
}

// ErrForeignCredentials means config.json has another tool's entry for the
// registry and the join was not told to replace it.
var ErrForeignCredentials = errors.New("another tool's credentials for the registry")

// refuseHostsConflict fails when the hosts step would refuse to map host: a
// line of the user's maps it, or edgecr's markers do not pair up. The hosts
// step checks again, for the host the device's answer names.
func (j *joinRun) refuseHostsConflict(ctx context.Context, host string) error {
	path := j.HostsPath
	content, err := j.Hosts(path).Read(ctx)
	if err != nil {
		return nil //nolint:nilerr // the hosts step reports what is wrong with the file
	}
	entries, err := hostsfile.Lookup(content, host)
	if errors.Is(err, hostsfile.ErrMalformedBlock) {
		return fmt.Errorf("adding %s to %s: %w (the join token was not spent)", host, path, err)
	}
	for _, e := range entries {
		if !e.Owned {
			return fmt.Errorf("adding %s to %s: %w (the join token was not spent)", host, path, &hostsfile.ConflictError{Host: host, Line: e.Line, Text: e.Text})
		}
	}
	return nil
}

// hosts: <ip> <host> in edgecr's block of the hosts file, one line per
// replica address for a device with several.
func (j *joinRun) hosts(ctx context.Context) error {
	e := j.e
	path := j.HostsPath
	var ips []netip.Addr
	for _, a := range e.Addresses() {
		ips = append(ips, netip.MustParseAddr(a))
	}
	shown := strings.Join(e.Addresses(), ", ")
	prior := e.Hosts
	e.Hosts = &HostsRecord{Path: path, Host: e.Host, IP: e.IP, Added: prior != nil && prior.Added}
	if len(ips) > 1 {
		e.Hosts.IPs = e.Addresses()
	}
	if err := j.save(); err != nil { // recorded before the change, so a crash cannot orphan it
		return err
	}
	hf := j.Hosts(path)
	// Refuse a user's line before taking the file's lock, so that a refusal
	// leaves no trace at all; Add checks again under the lock.
	if content, err := hf.Read(ctx); err == nil {
		if _, err := hostsfile.AddAll(content, ips, e.Host); errors.Is(err, hostsfile.ErrHostOwnedByUser) {
			return fmt.Errorf("adding %s %s to %s: %w", shown, e.Host, path, err)
		}
	}
	changed, err := hf.AddAll(ctx, ips, e.Host)
	if err != nil {
		return fmt.Errorf("adding %s %s to %s: %w", shown, e.Host, path, err)
	}
	e.Hosts.Added = e.Hosts.Added || changed
	if changed {
		j.emit(StepHosts, "hosts", StatusChanged, fmt.Sprintf("added %s %s to %s", shown, e.Host, path))
	} else {
		j.emit(StepHosts, "hosts", StatusUnchanged, fmt.Sprintf("unchanged: %s already maps %s to %s", path, e.Host, shown))
	}
	return nil
}

// trust: the CA into the OS trust store and every container runtime found.
func (j *joinRun) trust(ctx context.Context) error {
	e := j.e
	pem := []byte(e.CAPEM)
	var kind trust.Kind
	if e.Trust != nil {
		kind = e.Trust.Kind
	}
	store, kind, err := j.OpenTrust(kind)
	if err != nil {
		return fmt.Errorf("opening the OS trust store: %w", err)
	}
	name := TrustName(e.Registry)
	if e.Trust == nil {
		e.Trust = &TrustRecord{Kind: kind, Name: name}
		if err := j.save(); err != nil {
			return err
		}
	}
	// Whether join adds the CA is recorded before it does: leave takes
	// away only a CA join added, never one the user trusted already, and a
	// crash right after the change cannot leave a CA no record owns.
	had, err := store.Installed(ctx, e.Trust.Name, pem)
	if err != nil {
		return fmt.Errorf("checking the %s trust store: %w", kind, err)
	}
	if !had && !e.Trust.Installed {
		e.Trust.Installed = true
		if err := j.save(); err != nil {
			return err
		}
	}
	if !had && j.trustNote != "" {
		j.emit(StepTrust, "trust store", StatusNotice, j.trustNote)
	}
	changed, err := store.Install(ctx, e.Trust.Name, pem)
	if err != nil {
		return fmt.Errorf("installing the CA into the %s trust store: %w", kind, err)
	}
	e.Trust.Installed = e.Trust.Installed || changed
	where := describeStore(kind, j.Root, e.Trust.Name, pem)
	if changed {
		j.emit(StepTrust, "trust store", StatusChanged, fmt.Sprintf("installed the CA (sha256:%s…) %s", e.Pin[:16], where))
	} else {
		j.emit(StepTrust, "trust store", StatusUnchanged, fmt.Sprintf("unchanged: the CA is already installed %s", where))
	}
	if plan, err := trust.PlanStore(kind, j.Root, e.Trust.Name, pem); err == nil {
		for _, n := range plan.Notes {
			j.emit(StepTrust, "trust store", StatusWarning, n)
		}
	}
	if err := j.runtimes(ctx); err != nil {
		return err
	}
	if err := j.browsers(ctx); err != nil {
		return err
	}
	j.desktopVMNotices(changed || j.dockerChanged)
	return nil
}

// describeStore says where a store keeps the CA, for messages.
func describeStore(kind trust.Kind, root, name string, pem []byte) string {
	switch kind {
	case trust.MacOS:
		return "in the System keychain (" + trust.SystemKeychain + ")"
	case trust.Windows:
		return "in the LocalMachine Root store"
	}
	plan, err := trust.PlanStore(kind, root, name, pem)
	if err != nil || plan.File == "" {
		return "in the " + string(kind) + " trust store"
	}
	s := "as " + plan.File
	if len(plan.Install) > 0 {
		s += " (" + plan.Install[0][0] + ")"
	}
	return s
}

func (j *joinRun) runtimes(ctx context.Context) error {
	e := j.e
	found := j.DetectRuntimes()
	var absent []string
	for _, rt := range trust.AllRuntimes() {
		if !slices.Contains(found, rt) {
			absent = append(absent, string(rt))
		}
	}
	if len(found) == 0 {
		j.emit(StepTrust, "runtimes", StatusSkipped, "no container runtime found ("+strings.Join(absent, ", ")+" not present)")
		return nil
	}
	plan, err := trust.PlanRuntimes(j.RuntimePaths, e.Registry, []byte(e.CAPEM), found)
	if err != nil {
		return fmt.Errorf("planning container runtime trust: %w", err)
	}
	if e.Runtimes == nil {
		e.Runtimes = &trust.RuntimeReceipt{Registry: e.Registry}
		if err := j.save(); err != nil {
			return err
		}
	}
	// What will be written is recorded before it is: a crash right after a
	// write cannot leave a file that neither a rerun nor leave knows as ours.
	rc, changed, err := j.Runtimes.InstallWithIntent(ctx, plan, e.Runtimes, func(intent trust.RuntimeReceipt) error {
		e.Runtimes = &intent
		return j.save()
	})
	e.Runtimes = &rc // on error too: it says what to roll back
	if err != nil {
		return fmt.Errorf("configuring container runtimes: %w", err)
	}
	dockerChanged, k3sChanged := false, false
	for _, rt := range plan.Runtimes {
		var files []string
		rtChanged := false
		for _, f := range plan.Files {
			if f.Runtime != rt {
				continue
			}
			p := Rooted(j.GOOS, j.Root, f.Path)
			files = append(files, p)
			if slices.Contains(changed, p) {
				rtChanged = true
			}
		}
		if rt == trust.K3s && plan.K3s != nil {
			p := Rooted(j.GOOS, j.Root, plan.K3s.Path)
			files = append(files, p)
			if slices.Contains(changed, p) {
				rtChanged, k3sChanged = true, true
			}
		}
		if rt == trust.Docker && rtChanged {
			dockerChanged, j.dockerChanged = true, true
		}
		if rtChanged {
			j.emit(StepTrust, string(rt), StatusChanged, "configured: "+strings.Join(files, ", "))
		} else {
			j.emit(StepTrust, string(rt), StatusUnchanged, "unchanged: "+strings.Join(files, ", "))
		}
	}
	if len(absent) > 0 {
		j.emit(StepTrust, "runtimes", StatusSkipped, "not present: "+strings.Join(absent, ", "))
	}
	// Where a desktop VM is found, its own notice says what to restart.
	for _, n := range RestartNotices(j.GOOS, dockerChanged && len(j.desktopVMs()) == 0, k3sChanged) {
		j.emit(StepTrust, "restart", StatusNotice, n)
	}
	return nil
}

// credentials: the credential into the helper's store, and credHelpers in
// Docker's config.json.
func (j *joinRun) credentials(ctx context.Context) error {
	e := j.e
	path := j.CredentialsPath
	if e.Credential != nil && e.Credential.Path != "" {
		path = e.Credential.Path
	}
	if path == "" {
		return errors.New("storing the credential: cannot locate the user's config directory: set EDGECR_CONFIG_DIR")
	}
	store := j.Credentials(path)
	if e.Credential == nil {
		e.Credential = &CredentialRecord{Path: path, Key: e.Registry, FileExisted: exists(path), CreatedDirs: missingDirs(filepath.Dir(path))}
		if err := j.save(); err != nil {
			return err
		}
	}
	owner := ""
	if j.User.Sudo {
		owner = ", owned by " + j.User.Name
	}
	if e.PendingSecret != "" {
		u, p, err := store.Get(e.Registry)
		same := err == nil && u == e.Username && p == e.PendingSecret
		if !same {
			if err := store.Add(&credentials.Credentials{ServerURL: e.Registry, Username: e.Username, Secret: e.PendingSecret}); err != nil {
				return fmt.Errorf("storing the credential in %s: %w", path, err)
			}
		}
		e.PendingSecret = ""
		if err := j.save(); err != nil {
			return err
		}
		if same {
			j.emit(StepCredentials, "credential", StatusUnchanged, fmt.Sprintf("unchanged: %s holds the credential of %s", path, e.Username))
		} else {
			j.emit(StepCredentials, "credential", StatusChanged, fmt.Sprintf("stored the credential of %s for %s in %s (0600%s)", e.Username, e.Registry, path, owner))
		}
	} else {
		if _, _, err := store.Get(e.Registry); err != nil {
			return fmt.Errorf("reading the stored credential for %s from %s: %w", e.Registry, path, err)
		}
		j.emit(StepCredentials, "credential", StatusUnchanged, fmt.Sprintf("unchanged: %s holds the credential of %s", path, e.Username))
	}

	// A Change recorded before a crash: if config.json shows it, the write
	// happened and the entry is ours; if not, only the directories it may
	// have made are.
	var leftDirs []string
	if r := e.DockerConfig; r != nil && r.Pending {
		applied, err := j.Docker.Applied(r.Path, r.Change)
		if err != nil {
			return err
		}
		if applied {
			r.Pending = false
			if err := j.save(); err != nil {
				return err
			}
		} else {
			leftDirs = r.Change.CreatedDirs
		}
	}
	// The Change is recorded before config.json is written, so that a
	// crash right after the write cannot leave an entry leave does not know.
	ch, err := j.Docker.Register(e.Registry, func(planned credhelper.Change) error {
		planned.CreatedDirs = unionDirs(leftDirs, planned.CreatedDirs)
		e.DockerConfig = &DockerRecord{Path: j.Docker.Path(), Change: planned, Pending: true}
		return j.save()
	})
	if err != nil {
		return err
	}
	switch {
	case ch.Changed():
		ch.CreatedDirs = unionDirs(e.DockerConfig.Change.CreatedDirs, ch.CreatedDirs)
		e.DockerConfig = &DockerRecord{Path: j.Docker.Path(), Change: ch}
	case e.DockerConfig == nil || e.DockerConfig.Pending:
		// Keep the Change that did the work: a later Register finds
		// everything in place and returns an empty one.
		ch.CreatedDirs = leftDirs
		e.DockerConfig = &DockerRecord{Path: j.Docker.Path(), Change: ch}
	}
	if ch.Changed() {
		msg := fmt.Sprintf("set credHelpers[%q] = %q in %s", e.Registry, HelperName, j.Docker.Path())
		if ch.CredsStore != "" {
			msg += fmt.Sprintf(`, and credsStore = %q so that Docker keeps using it for your other registries`, ch.CredsStore)
		}
		j.emit(StepCredentials, "docker config", StatusChanged, msg)
	} else {
		j.emit(StepCredentials, "docker config", StatusUnchanged, fmt.Sprintf("unchanged: credHelpers[%q] = %q in %s", e.Registry, HelperName, j.Docker.Path()))
	}
	if j.User.Sudo {
		j.emit(StepCredentials, "docker", StatusNotice, fmt.Sprintf("the Docker config and credential are %s's: run docker as %s (sudo docker reads root's config, not these)", j.User.Name, j.User.Name))
	}
	return nil
}

// unionDirs is a followed by the directories of b it lacks, outermost
// first (an outer directory's path is a prefix of an inner one's).
func unionDirs(a, b []string) []string {
	out := slices.Clone(a)
	for _, d := range b {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(x, y string) int { return len(x) - len(y) })
	return out
}

// verify: the name resolves, TLS verifies, the helper returns the
// credential and the registry accepts it.
func (j *joinRun) verify(ctx context.Context) error {
	e := j.e
	checks := []Check{j.checkResolve(ctx, e), j.checkTLS(ctx, e)}
	found, got, user, secret := j.checkHelper(ctx, e)
	if !found.OK {
		j.emit(StepVerify, "helper", StatusWarning, found.Detail+"; "+found.Fix+". Checking the stored credential directly")
	} else {
		checks = append(checks, got)
	}
	checks = append(checks, j.checkRegistry(ctx, e, user, secret))
	for _, c := range checks {
		if !c.OK {
			msg := fmt.Sprintf("verifying %s: %s: %s", e.Registry, c.Name, c.Detail)
			if c.Fix != "" {
				msg += " (" + c.Fix + ")"
			}
			return errors.New(msg)
		}
		j.emit(StepVerify, "verify", StatusUnchanged, c.Detail)
		if c.Warning != "" {
			j.emit(StepVerify, "replicas", StatusWarning, c.Warning)
		}
	}
	return nil
}
