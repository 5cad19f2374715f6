package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/edgecr/edgecr/hostsfile"
	"golang.org/x/net/publicsuffix"
)

// A join installs the device CA as a trusted root and maps the registry
// host in the hosts file: a device (or whoever made the token) must not
// choose names that are not its own. The checks below accept what a real
// edgecrd presents (server/pki.go) and nothing broader:
//   - the CA carries critical name constraints, DNS and IP;
//   - every permitted DNS zone is a name of its own, not a public suffix
//     (com, co.uk, github.io, internal) and not a well-known registry or
//     its operator's domain; localhost is allowed;
//   - every permitted IP range lies in the private and special-use ranges,
//     or is one address the device itself advertises;
//   - the registry host is a valid host name inside those zones, in the
//     certificate the device presented, and passes the same name rules.
// They run before anything is recorded or written, and (the CA) before
// the token is spent.

// ErrUntrustedDevice is wrapped by every refusal of what a device presents.
var ErrUntrustedDevice = errors.New("refusing the device")

// ErrUnconstrainedCA means the device CA lacks critical name constraints
// (an edgecrd older than the constraints, or not an edgecrd);
// --allow-unconstrained-ca accepts it.
var ErrUnconstrainedCA = errors.New("the device CA has no critical name constraints")

// wellKnownDomains are registries and their operators' domains: a device
// may not name them, nor be permitted a zone that contains or lies in one.
var wellKnownDomains = []string{
	"docker.io", "docker.com", "ghcr.io", "github.com", "githubusercontent.com",
	"quay.io", "gcr.io", "pkg.dev", "googleapis.com", "google.com",
	"amazonaws.com", "ecr.aws", "amazon.com", "azurecr.io", "microsoft.com",
	"azure.com", "windows.net", "k8s.io", "gitlab.com", "redhat.io",
	"redhat.com", "nvcr.io", "oracle.com", "ocir.io", "icr.io",
	"cloudflare.com", "apple.com", "mozilla.org", "golang.org", "proxy.golang.org",
}

// specialRanges are the addresses a device CA may be permitted besides the
// device's own: loopback, RFC 1918, CGNAT, link-local, benchmarking,
// IPv6 ULA and link-local (server/pki.go's privateRanges).
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10"),
}

// CheckOwnName refuses a name a device may not claim: not a valid host
// name, a public suffix, localhost, or a well-known registry or domain
// (or a name under one, or above one).
func CheckOwnName(name string) error {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if err := hostsfile.CheckHost(n); err != nil {
		return err
	}
	if n == "localhost" || strings.HasSuffix(n, ".localhost") {
		return fmt.Errorf("%q is localhost", n)
	}
	if suffix, _ := publicsuffix.PublicSuffix(n); suffix == n {
		return fmt.Errorf("%q is a public suffix (a name many owners share)", n)
	}
	for _, w := range wellKnownDomains {
		if n == w || strings.HasSuffix(n, "."+w) || strings.HasSuffix(w, "."+n) {
			return fmt.Errorf("%q is or covers %s, a public registry or service", n, w)
		}
	}
	return nil
}

// CheckDeviceCA checks the device CA's constraints before the token is
// spent. ips are the addresses the device is known by (the join URL's IP,
// later the ones it advertises): a public address may be permitted only
// if it is one of them. With allowUnconstrained, a CA without critical
// constraints passes (ErrUnconstrainedCA is returned as a warning), but a
// constraint that names someone else's zone never does.
//
// A permitted zone in the public DNS (under an ICANN suffix: example.com,
// corp.example.co.uk) passes only when allowDomains (--allow-domain) holds
// it or a zone above it: the denylist of well-known domains cannot know
// every name a machine trusts (a bank, a package index), and a device's
// own zone is normally private (.internal, .lan, home.arpa).
func CheckDeviceCA(ca *x509.Certificate, ips []netip.Addr, allowUnconstrained bool, allowDomains []string) (warning error, err error) {
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains) == 0 || len(ca.PermittedIPRanges) == 0 {
		e := fmt.Errorf("%w: %w (permitted DNS %v, IP ranges %v, critical %v): once trusted it could vouch for any web site on this machine; upgrade edgecrd on the device (serve or init re-issues its CA with constraints) and make a new token, or join with --allow-unconstrained-ca",
			ErrUntrustedDevice, ErrUnconstrainedCA, ca.PermittedDNSDomains, ca.PermittedIPRanges, ca.PermittedDNSDomainsCritical)
		if !allowUnconstrained {
			return nil, e
		}
		warning = e
	}
	for _, d := range ca.PermittedDNSDomains {
		d = strings.TrimPrefix(strings.ToLower(d), ".")
		if d == "localhost" {
			continue
		}
		if err := CheckOwnName(d); err != nil {
			return nil, fmt.Errorf("%w: its CA may certify names under %s: %w", ErrUntrustedDevice, d, err)
		}
		if err := checkPrivateZone(d, allowDomains); err != nil {
			return nil, fmt.Errorf("%w: its CA may certify names under %s: %w", ErrUntrustedDevice, d, err)
		}
	}
	for _, r := range ca.PermittedIPRanges {
		if err := checkPermittedRange(r, ips); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUntrustedDevice, err)
		}
	}
	return warning, nil
}

// checkPrivateZone refuses a zone in the public DNS unless allow holds it
// or a zone above it.
func checkPrivateZone(zone string, allow []string) error {
	if zone == "home.arpa" || strings.HasSuffix(zone, ".home.arpa") { // RFC 8375, private
		return nil
	}
	suffix, icann := publicsuffix.PublicSuffix(zone)
	if !icann {
		return nil
	}
	for _, a := range allow {
		a = strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(a, ".")), ".")
		if a != "" && (zone == a || strings.HasSuffix(zone, "."+a)) {
			return nil
		}
	}
	return fmt.Errorf("%q lies in the public DNS (under .%s), and a device's own zone is normally private (.internal, .lan, home.arpa): "+
		"if this device really is yours under that domain, join with --allow-domain %s", zone, suffix, zone)
}

func checkPermittedRange(r *net.IPNet, ips []netip.Addr) error {
	addr, ok := netip.AddrFromSlice(r.IP)
	ones, bits := r.Mask.Size()
	if !ok || bits == 0 {
		return fmt.Errorf("its CA has a malformed permitted IP range %v", r)
	}
	p := netip.PrefixFrom(addr.Unmap(), ones-(bits-addr.Unmap().BitLen()))
	for _, s := range specialRanges {
		if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
			return nil
		}
	}
	if p.IsSingleIP() && slices.Contains(ips, p.Addr()) {
		return nil
	}
	return fmt.Errorf("its CA may certify the public addresses %s, which are not the device's (%v)", p, ips)
}

// CheckRegistryHost checks the registry host a device answered: a name of
// its own (CheckOwnName), inside the CA's constraints, and in the
// certificate the device presented (leaf), which must verify for it.
func CheckRegistryHost(ca, leaf *x509.Certificate, host string) error {
	if err := CheckOwnName(host); err != nil {
		return fmt.Errorf("%w: registry host: %w", ErrUntrustedDevice, err)
	}
	if leaf == nil {
		return fmt.Errorf("%w: no certificate was presented", ErrUntrustedDevice)
	}
	if len(ca.PermittedDNSDomains) > 0 && !slices.ContainsFunc(ca.PermittedDNSDomains, func(d string) bool {
		d = strings.TrimPrefix(strings.ToLower(d), ".")
		return d != "localhost" && (host == d || strings.HasSuffix(host, "."+d))
	}) {
		return fmt.Errorf("%w: registry host %s is outside its CA's permitted names %v", ErrUntrustedDevice, host, ca.PermittedDNSDomains)
	}
	if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, host) }) {
		return fmt.Errorf("%w: registry host %s is not in its certificate's names %v", ErrUntrustedDevice, host, leaf.DNSNames)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: its certificate does not verify for %s: %w", ErrUntrustedDevice, host, err)
	}
	return nil
}

// idPattern is what a device may use as a client ID or user name: what
// edgecrd makes ("c-<hex>"), with room to change, and nothing that can
// steer a terminal or break a credential file.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckIdentity checks the client ID, user name and role a device
// answered before any of them is recorded or printed.
func CheckIdentity(clientID, username, role string) error {
	if !idPattern.MatchString(clientID) {
		return fmt.Errorf("%w: invalid client ID %q", ErrUntrustedDevice, clientID)
	}
	if !idPattern.MatchString(username) {
		return fmt.Errorf("%w: invalid user name %q", ErrUntrustedDevice, username)
	}
	switch role {
	case "", "pull", "push", "admin":
		return nil
	}
	return fmt.Errorf("%w: invalid role %q (want pull, push or admin)", ErrUntrustedDevice, role)
}
