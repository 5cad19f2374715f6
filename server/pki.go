package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// Lifetimes of the device's certificates. The CA outlives many server
// certificates so that clients never have to re-join for a renewal.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
)

// CA is the device's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// Fingerprint is the pin clients check: sha256 of the CA certificate's DER.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint returns "sha256:<hex>" of a certificate's DER bytes.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// privateRanges are the address ranges a device CA may certify besides the
// device's own configured addresses: loopback, RFC 1918, CGNAT, link-local,
// the benchmarking range, IPv6 ULA and link-local.
var privateRanges = func() []*net.IPNet {
	var out []*net.IPNet
	for _, c := range []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
		"169.254.0.0/16", "198.18.0.0/15", "::1/128", "fc00::/7", "fe80::/10"} {
		_, n, _ := net.ParseCIDR(c)
		out = append(out, n)
	}
	return out
}()

// caConstraints limit what the device CA can vouch for. Clients install it
// as a trusted root; without constraints, whoever steals an edge box's
// ca.key could impersonate any web site to every joined client. With them
// it certifies only the device's own zone, <name>.<domain> (the registry
// host ecr.<name>.<domain> and names under it, not other devices of the
// same domain), and localhost; and private addresses plus the device's own.
// Private ranges rather than the device's addresses alone: a device's
// addresses change (DHCP, `--ip`) and a certificate must stay inside the
// constraints of the CA copy joined clients hold, which cannot change.
func caConstraints(name, domain string, ips []net.IP) (dns []string, nets []*net.IPNet) {
	dns = []string{caZone(name, domain), "localhost"}
	nets = append(nets, privateRanges...)
	for _, ip := range ips {
		if permittedIP(nets, ip) {
			continue
		}
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return dns, nets
}

func permittedIP(nets []*net.IPNet, ip net.IP) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// checkConstraints reports a host or IP the CA may not certify.
func (ca *CA) checkConstraints(host string, ips []net.IP) error {
	c := ca.Cert
	if len(c.PermittedDNSDomains) > 0 {
		ok := false
		for _, d := range c.PermittedDNSDomains {
			if host == d || strings.HasSuffix(host, "."+d) {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("registry host %s is outside the device CA's permitted domains %v: the device's name and domain cannot change without a new CA (and every client re-joining)", host, c.PermittedDNSDomains)
		}
	}
	if len(c.PermittedIPRanges) > 0 {
		for _, ip := range ips {
			if !permittedIP(c.PermittedIPRanges, ip) {
				return fmt.Errorf("IP %s is outside the ranges the device CA may certify (private ranges and the IPs given when it was created): a new public IP needs a new CA (and every client re-joining)", ip)
			}
		}
	}
	return nil
}

// caZone is the DNS zone a device CA may certify: <name>.<domain>.
func caZone(name, domain string) string { return strings.ToLower(name + "." + domain) }

func newCA(name, domain string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "edgecr device CA " + name, Organization: []string{"edgecr"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	tmpl.PermittedDNSDomains, tmpl.PermittedIPRanges = caConstraints(name, domain, ips)
	tmpl.PermittedDNSDomainsCritical = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// issueServerCert signs a fresh serving certificate for host and ips.
func (ca *CA) issueServerCert(host string, ips []net.IP, lifetime time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	if err := ca.checkConstraints(host, ips); err != nil {
		return nil, nil, err
	}
	dns, allIPs := serverSANs(host, ips)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"edgecr"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  allIPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing server certificate for %s: %w", host, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding server key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// serverSANs is the SAN set of the serving certificate: the registry host,
// every advertised IP, and loopback so that the device can reach itself.
func serverSANs(host string, ips []net.IP) ([]string, []net.IP) {
	dns := []string{host, "localhost"}
	all := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, ip := range ips {
		if !slices.ContainsFunc(all, ip.Equal) {
			all = append(all, ip)
		}
	}
	return dns, all
}

// needsReissue reports whether the serving certificate must be replaced:
// it is close to expiry (less than a third of its life left), or its SANs
// no longer match the configured host and IPs, or another CA signed it.
func needsReissue(cert *x509.Certificate, ca *CA, host string, ips []net.IP, now time.Time) (bool, string) {
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return true, "not signed by the device CA"
	}
	if cert.NotAfter.Sub(now) < renewBefore(cert) {
		return true, fmt.Sprintf("expires %s", cert.NotAfter.Format(time.RFC3339))
	}
	dns, all := serverSANs(host, ips)
	if !slices.Equal(cert.DNSNames, dns) || !slices.EqualFunc(cert.IPAddresses, all, net.IP.Equal) {
		return true, "host or IP addresses changed"
	}
	return false, ""
}

// renewBefore is how long before expiry a serving certificate is replaced:
// a third of its life, at most 30 days.
func renewBefore(cert *x509.Certificate) time.Duration {
	return min(cert.NotAfter.Sub(cert.NotBefore)/3, 30*24*time.Hour)
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating certificate serial: %w", err)
	}
	return s, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	return &CA{Cert: cert, Key: signer, PEM: certPEM}, nil
}

func parseServerPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &pair, nil
}
