package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/trust"
)

// Check is one hop between this client and the registry, as `edgecr
// status` reports it.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Warning names what is wrong but not broken: replicas of a device
	// with several that do not answer while another does.
	Warning string `json:"warning,omitempty"`
}

// The hops status and join's verification check, by Check.Name.
const (
	CheckJoin         = "join complete"
	CheckHosts        = "hosts entry"
	CheckResolve      = "name resolves"
	CheckTrustStore   = "CA in OS trust store"
	CheckRuntimePfx   = "CA in " // + runtime name
	CheckTLS          = "TLS verifies"
	CheckDockerConfig = "docker config"
	CheckHelperPath   = "helper on PATH"
	CheckHelperGet    = "helper returns a credential"
	CheckRegistry     = "registry accepts the credential"
)

func ok(name, detail string) Check { return Check{Name: name, OK: true, Detail: detail} }

func broken(name, detail, fix string) Check {
	return Check{Name: name, Detail: detail, Fix: fix}
}

// rejoinFix is the usual repair: join again, which re-converges every step
// and does not spend the token while the client's credential still works.
func rejoinFix(e *Entry) string {
	return fmt.Sprintf("run `edgecr join %s --token TOKEN` again as root (any token of this device: it is not spent while this client's credential works)", e.DeviceURL)
}

func (s *System) hostsPathOf(e *Entry) string {
	if e.Hosts != nil && e.Hosts.Path != "" {
		return e.Hosts.Path
	}
	return s.HostsPath
}

// checkHosts: the first line mapping the host is edgecr's, with the IP;
// for a device with replicas, edgecr's lines hold every address, in order.
func (s *System) checkHosts(ctx context.Context, e *Entry) Check {
	path := s.hostsPathOf(e)
	entries, err := s.Hosts(path).Lookup(ctx, e.Host)
	if err != nil {
		return broken(CheckHosts, fmt.Sprintf("reading %s: %v", path, err), "fix the file's edgecr markers, or remove the edgecr block and "+rejoinFix(e))
	}
	if len(entries) == 0 {
		return broken(CheckHosts, fmt.Sprintf("%s has no entry for %s", path, e.Host), rejoinFix(e))
	}
	first := entries[0]
	if !first.Owned {
		return broken(CheckHosts, fmt.Sprintf("line %d of %s (%q) maps %s before edgecr's entry", first.Line, path, first.Text, e.Host),
			fmt.Sprintf("remove or comment out line %d of %s", first.Line, path))
	}
	if first.Addr.String() != e.IP {
		return broken(CheckHosts, fmt.Sprintf("%s maps %s to %s, want %s", path, e.Host, first.Addr, e.IP), rejoinFix(e))
	}
	want := e.Addresses()
	if len(want) == 1 {
		return ok(CheckHosts, fmt.Sprintf("%s %s in %s", e.IP, e.Host, path))
	}
	var got []string
	for _, en := range entries {
		if en.Owned {
			got = append(got, en.Addr.String())
		}
	}
	if !slices.Equal(got, want) {
		return broken(CheckHosts, fmt.Sprintf("%s maps %s to %s, want %s", path, e.Host, strings.Join(got, ", "), strings.Join(want, ", ")), rejoinFix(e))
	}
	return ok(CheckHosts, fmt.Sprintf("%s %s in %s", strings.Join(want, ", "), e.Host, path))
}

// checkResolve: the resolver answers the IP for the host.
func (s *System) checkResolve(ctx context.Context, e *Entry) Check {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := s.Resolver.LookupNetIP(ctx, "ip", e.Host)
	fix := resolveFix(s.GOOS)
	if !IsLiveRoot(s.Root) {
		fix = rejoinFix(e) + " with the same --root"
	}
	if err != nil {
		return broken(CheckResolve, fmt.Sprintf("resolving %s: %v", e.Host, err), fix)
	}
	var missing []string
	for _, w := range e.Addresses() {
		want, _ := netip.ParseAddr(w)
		if !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == want.Unmap() }) {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return ok(CheckResolve, fmt.Sprintf("%s resolves to %s", e.Host, strings.Join(e.Addresses(), ", ")))
	}
	return broken(CheckResolve, fmt.Sprintf("%s resolves to %v, not %s", e.Host, addrs, strings.Join(missing, ", ")), fix)
}

// checkTrustStore: the CA is in the OS trust store.
func (s *System) checkTrustStore(ctx context.Context, e *Entry) Check {
	var kind trust.Kind
	name := TrustName(e.Registry)
	if e.Trust != nil {
		kind, name = e.Trust.Kind, e.Trust.Name
	}
	st, kind, err := s.OpenTrust(kind)
	if err != nil {
		return broken(CheckTrustStore, fmt.Sprintf("opening the trust store: %v", err), rejoinFix(e))
	}
	in, err := st.Installed(ctx, name, []byte(e.CAPEM))
	if err != nil {
		return broken(CheckTrustStore, fmt.Sprintf("checking the %s trust store: %v", kind, err), rejoinFix(e))
	}
	if !in {
		return broken(CheckTrustStore, fmt.Sprintf("the %s trust store does not hold the CA (sha256:%s) as %s", kind, e.Pin, name), rejoinFix(e))
	}
	return ok(CheckTrustStore, fmt.Sprintf("%s trust store holds the CA as %s", kind, name))
}

// checkRuntimes: each runtime join configured still trusts the CA.
func (s *System) checkRuntimes(ctx context.Context, e *Entry) []Check {
	if e.Runtimes == nil {
		return nil
	}
	var out []Check
	for _, rt := range e.Runtimes.Runtimes {
		name := CheckRuntimePfx + string(rt)
		plan, err := trust.PlanRuntimes(s.RuntimePaths, e.Registry, []byte(e.CAPEM), []trust.Runtime{rt})
		if err != nil {
			out = append(out, broken(name, fmt.Sprintf("planning %s trust: %v", rt, err), rejoinFix(e)))
			continue
		}
		missing, err := s.Runtimes.Verify(ctx, plan)
		switch {
		case err != nil:
			out = append(out, broken(name, fmt.Sprintf("checking %s trust: %v", rt, err), rejoinFix(e)))
		case len(missing) > 0:
			out = append(out, broken(name, fmt.Sprintf("missing or changed: %v", missing), rejoinFix(e)))
		default:
			out = append(out, ok(name, fmt.Sprintf("%s trusts the CA", rt)))
		}
	}
	return out
}

// roots returns the CA pool TLS verification uses and what it is: the
// system's (nil pool) on the live system, else the trust bundle the trust
// step refreshed under Root (or the anchor file itself, where the store
// cannot be refreshed under a root).
func (s *System) roots(e *Entry) (*x509.CertPool, string, error) {
	if IsLiveRoot(s.Root) {
		return nil, "the system trust store", nil
	}
	if e.Trust == nil {
		return nil, "", errors.New("no trust store recorded for this registry")
	}
	plan, err := trust.PlanStore(e.Trust.Kind, s.Root, e.Trust.Name, []byte(e.CAPEM))
	if err != nil {
		return nil, "", err
	}
	path := plan.Bundle
	if path == "" {
		path = plan.File
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, "", fmt.Errorf("the trust bundle %s holds no certificate", path)
	}
	return pool, "the trust bundle " + path, nil
}

// registryTransport connects to the registry by its name, as Docker does,
// with TLS verified against roots; the TCP connection goes to ip (one of
// the entry's addresses), so that a check does not depend on the resolver
// (checked apart).
func registryTransport(e *Entry, ip string, roots *x509.CertPool) *http.Transport {
	addr := net.JoinHostPort(ip, strconv.Itoa(e.Port))
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: e.Host, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
	}
}

// eachAddress runs check against every address of e, in parallel. With one
// address it is that check. With several (replicas) the hop works while
// one address passes: the result is the first passing check, naming the
// addresses that pass, with a warning naming the others and why; when
// none passes, the first failure, naming every address's.
func eachAddress(e *Entry, check func(ip string) Check) Check {
	addrs := e.Addresses()
	if len(addrs) == 1 {
		return check(addrs[0])
	}
	res := make([]Check, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = check(a)
		}()
	}
	wg.Wait()
	var good, bad []string
	first := -1
	for i, c := range res {
		if c.OK {
			good = append(good, addrs[i])
			if first < 0 {
				first = i
			}
		} else {
			bad = append(bad, addrs[i]+": "+c.Detail)
		}
	}
	if first < 0 {
		out := res[0]
		out.Detail = fmt.Sprintf("no replica answers (%s)", strings.Join(bad, "; "))
		return out
	}
	out := res[first]
	out.Detail += fmt.Sprintf(" (at %s: %d of %d replicas)", strings.Join(good, ", "), len(good), len(addrs))
	if len(bad) > 0 {
		out.Warning = "replicas that do not answer: " + strings.Join(bad, "; ")
	}
	return out
}

// checkTLS: a handshake with the registry by name verifies, at each of
// its addresses.
func (s *System) checkTLS(ctx context.Context, e *Entry) Check {
	return eachAddress(e, func(ip string) Check { return s.checkTLSAt(ctx, e, ip) })
}

func (s *System) checkTLSAt(ctx context.Context, e *Entry, ip string) Check {
	roots, what, err := s.roots(e)
	if err != nil {
		return broken(CheckTLS, err.Error(), rejoinFix(e))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{RootCAs: roots, ServerName: e.Host, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(e.Port)))
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		switch {
		case errors.As(err, &unknown):
			return broken(CheckTLS, fmt.Sprintf("TLS to %s does not verify with %s: %v", e.Registry, what, err), rejoinFix(e))
		case errors.As(err, &host):
			return broken(CheckTLS, fmt.Sprintf("TLS to %s: %v", e.Registry, err), "the device's certificate does not name "+e.Host+": check the device's registry host (edgecrd info)")
		default:
			return broken(CheckTLS, fmt.Sprintf("TLS to %s at %s: %v", e.Registry, ip, err), "check that the device is up and reachable at "+ip)
		}
	}
	conn.Close()
	return ok(CheckTLS, fmt.Sprintf("TLS to %s verifies with %s", e.Registry, what))
}

// checkDockerConfig: config.json sends Docker to the helper.
func (s *System) checkDockerConfig(e *Entry) Check {
	path := s.Docker.Path()
	if e.DockerConfig != nil && e.DockerConfig.Path != "" {
		path = e.DockerConfig.Path
	}
	h, err := s.Docker.Helper(path, e.Registry)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return broken(CheckDockerConfig, err.Error(), otherUserFix(path))
	case err != nil:
		return broken(CheckDockerConfig, err.Error(), "fix the JSON of "+path+", then "+rejoinFix(e))
	case h != HelperName:
		return broken(CheckDockerConfig, fmt.Sprintf("credHelpers[%q] in %s is %q, want %q", e.Registry, path, h, HelperName), rejoinFix(e))
	}
	return ok(CheckDockerConfig, fmt.Sprintf("credHelpers[%q] = %q in %s", e.Registry, HelperName, path))
}

// otherUserFix is the repair when this user may not read a file the join
// made for another user (root, joined without sudo): check as that user.
func otherUserFix(path string) string {
	return "this user may not read " + path + ": the join was made for another user (root); run `sudo edgecr status`, or join with sudo from this user's account"
}

const helperInstallFix = "install " + HelperCommand + " in a directory on PATH (it ships next to edgecr, e.g. /usr/local/bin)"

// checkHelper: the helper is on PATH and returns the client's credential.
// It returns the credential to check against the registry (the stored one
// when the helper cannot be run).
func (s *System) checkHelper(ctx context.Context, e *Entry) (found, got Check, user string, secret Secret) {
	path, err := s.Helper.Find()
	if err != nil {
		found = broken(CheckHelperPath, HelperCommand+" is not on PATH: Docker cannot get the credential", helperInstallFix)
		got = broken(CheckHelperGet, "not run: "+HelperCommand+" is not on PATH", helperInstallFix)
		user, secret, _ = s.storedCredential(e)
		return found, got, user, secret
	}
	found = ok(CheckHelperPath, path)
	u, p, err := s.Helper.Get(ctx, path, e.Registry)
	if err != nil {
		got = broken(CheckHelperGet, err.Error(), rejoinFix(e))
		user, secret, _ = s.storedCredential(e)
		return found, got, user, secret
	}
	if u != e.Username {
		got = broken(CheckHelperGet, fmt.Sprintf("%s returns user %s, want %s", HelperCommand, u, e.Username), rejoinFix(e))
		return found, got, u, p
	}
	return found, ok(CheckHelperGet, fmt.Sprintf("%s returns the credential of %s", HelperCommand, u)), u, p
}

// checkRegistry: GET /v2/ with the credential answers 200, at each of the
// registry's addresses.
func (s *System) checkRegistry(ctx context.Context, e *Entry, user string, secret Secret) Check {
	if user == "" || secret == "" {
		return broken(CheckRegistry, "no credential to check", rejoinFix(e))
	}
	return eachAddress(e, func(ip string) Check { return s.checkRegistryAt(ctx, e, ip, user, secret) })
}

func (s *System) checkRegistryAt(ctx context.Context, e *Entry, ip, user string, secret Secret) Check {
	roots, _, err := s.roots(e)
	if err != nil {
		return broken(CheckRegistry, err.Error(), rejoinFix(e))
	}
	tr := registryTransport(e, ip, roots)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.Registry+pathV2, nil)
	if err != nil {
		return broken(CheckRegistry, err.Error(), "")
	}
	req.Header.Set("Authorization", basicAuth(user, secret))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return broken(CheckRegistry, fmt.Sprintf("GET https://%s/v2/: %v", e.Registry, unwrapURLError(err)), "check that the device is up and reachable at "+ip)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return ok(CheckRegistry, fmt.Sprintf("GET https://%s/v2/ as %s: 200", e.Registry, user))
	case http.StatusUnauthorized:
		return broken(CheckRegistry, fmt.Sprintf("the registry refuses the credential of %s (401): the client was revoked on the device", user),
			"run `edgecr leave`, then join again with a new token (edgecrd token create)")
	case http.StatusTooManyRequests:
		return broken(CheckRegistry, "the registry is throttling this address (429)", "wait a minute and check again")
	default:
		return broken(CheckRegistry, fmt.Sprintf("GET https://%s/v2/ as %s: %s", e.Registry, user, resp.Status), "check the device (edgecrd logs)")
	}
}

// unwrapURLError drops url.Error's repetition of method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// storedCredential is the client's credential: from the helper's store,
// or, between bootstrap and the credentials step, from the state.
func (s *System) storedCredential(e *Entry) (string, Secret, bool) {
	if e.PendingSecret != "" {
		return e.Username, Secret(e.PendingSecret), true
	}
	path := s.CredentialsPath
	if e.Credential != nil {
		path = e.Credential.Path
	}
	if path == "" {
		return "", "", false
	}
	u, p, err := s.Credentials(path).Get(e.Registry)
	if err != nil || u == "" || p == "" {
		return "", "", false
	}
	return u, Secret(p), true
}
