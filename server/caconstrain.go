package server

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// A device CA made by an earlier edgecrd may have no name constraints, or
// permit its whole DNS domain (every *.internal, so every other device of
// that domain). Clients refuse such a CA (agent/devicecheck.go), so serve
// and init re-issue the CA certificate under the same key, same subject
// and same validity, with the constraints of caConstraints. The pin (the
// certificate's hash) changes once: outstanding join tokens must be made
// again. Joined clients keep working: the serving certificate is signed by
// the same key and name, verifies against the CA copy they hold, and stays
// inside its constraints, which were the broader ones.

// constrainCA returns ca, or, when ca's constraints are missing or broader
// than the device's zone, ca re-issued with them (written to ca.crt).
func (s *State) constrainCA(ca *CA, now time.Time) (*CA, error) {
	zone := caZone(s.Device.Name, s.Device.Domain)
	if !needsConstraints(ca.Cert, zone) {
		return ca, nil
	}
	certPEM, err := reissueConstrainedCA(ca, s.Device.Name, s.Device.Domain, s.Device.netIPs(), now)
	if err != nil {
		return nil, fmt.Errorf("re-issuing device CA %s with name constraints: %w", s.where(caCertFile), err)
	}
	out := &CA{Key: ca.Key, PEM: certPEM}
	block, _ := pem.Decode(certPEM)
	if out.Cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("re-issuing device CA: %w", err)
	}
	_, ver, _, err := s.get(caCertFile)
	if err != nil {
		return nil, err
	}
	if _, err := s.put(caCertFile, certPEM, ver); err != nil {
		return nil, err
	}
	return out, nil
}

// needsConstraints reports whether c lacks critical DNS and IP constraints
// or permits a DNS name outside zone and localhost.
func needsConstraints(c *x509.Certificate, zone string) bool {
	if !c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains) == 0 || len(c.PermittedIPRanges) == 0 {
		return true
	}
	for _, d := range c.PermittedDNSDomains {
		d = strings.ToLower(strings.TrimPrefix(d, "."))
		if d != "localhost" && d != zone && !strings.HasSuffix(d, "."+zone) {
			return true
		}
	}
	return false
}

// reissueConstrainedCA signs a new certificate for ca's key with the same
// subject, key identifier and validity, and the constraints of
// caConstraints. IP ranges the old certificate already had are kept: the
// serving certificate must stay inside the copy joined clients hold.
func reissueConstrainedCA(ca *CA, name, domain string, ips []net.IP, now time.Time) ([]byte, error) {
	old := ca.Cert
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     old.Subject,
		SubjectKeyId:                old.SubjectKeyId,
		NotBefore:                   old.NotBefore,
		NotAfter:                    old.NotAfter,
		KeyUsage:                    old.KeyUsage | x509.KeyUsageCertSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		ExcludedDNSDomains:          old.ExcludedDNSDomains,
		ExcludedIPRanges:            old.ExcludedIPRanges,
	}
	tmpl.PermittedDNSDomains, tmpl.PermittedIPRanges = caConstraints(name, domain, ips)
	if len(old.PermittedIPRanges) > 0 {
		tmpl.PermittedIPRanges = slices.Clone(old.PermittedIPRanges)
	}
	if now.After(old.NotAfter) {
		return nil, fmt.Errorf("the CA expired on %s", old.NotAfter.Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.Key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
