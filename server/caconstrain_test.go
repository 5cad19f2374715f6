package server

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// oldCA writes, for st's CA key, the CA certificate an earlier edgecrd
// made: none (no constraints) or the whole domain ("internal").
func oldCA(t *testing.T, st *State, dns []string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big1(),
		Subject:               pkix.Name{CommonName: "edgecr device CA box", Organization: []string{"edgecr"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if dns != nil {
		tmpl.PermittedDNSDomains = dns
		_, tmpl.PermittedIPRanges = caConstraints("box", "internal", nil)
		tmpl.PermittedDNSDomainsCritical = true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, st.CA.Key.Public(), st.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(st.Dir, caCertFile), p, 0o644); err != nil {
		t.Fatal(err)
	}
	// The serving certificate the old CA issued.
	ca, err := parseCA(p, mustRead(t, filepath.Join(st.Dir, caKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.issueServerCert(st.Device.Host, st.Device.netIPs(), serverLifetime, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, serverCertFile), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, serverKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func big1() *big.Int { n, _ := randomSerial(); return n }

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func poolOf(t *testing.T, certPEM []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate")
	}
	return p
}

// An unconstrained or domain-wide CA of an earlier edgecrd is re-issued on
// init/serve with the same key and the device zone's constraints: the pin
// changes once, and the serving certificate still verifies against the old
// copy joined clients hold.
func TestEnsureConstrainsAnOldCA(t *testing.T) {
	for _, c := range []struct {
		name string
		dns  []string
	}{
		{"unconstrained", nil},
		{"whole domain", []string{"internal", "localhost"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := Ensure(dir, testOptions("box"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			oldPEM := oldCA(t, st, c.dns)
			oldKey := mustRead(t, filepath.Join(dir, caKeyFile))

			st2, err := Ensure(dir, InitOptions{}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			newPEM := mustRead(t, filepath.Join(dir, caCertFile))
			if string(newPEM) == string(oldPEM) {
				t.Fatal("ca.crt was not re-issued")
			}
			if string(mustRead(t, filepath.Join(dir, caKeyFile))) != string(oldKey) {
				t.Fatal("ca.key changed")
			}
			nc := st2.CA.Cert
			if !nc.PermittedDNSDomainsCritical || !slices.Equal(nc.PermittedDNSDomains, []string{"box.internal", "localhost"}) || len(nc.PermittedIPRanges) == 0 {
				t.Fatalf("constraints: critical %v, DNS %v, IPs %v", nc.PermittedDNSDomainsCritical, nc.PermittedDNSDomains, nc.PermittedIPRanges)
			}
			leaf, err := st2.LoadServerCert()
			if err != nil {
				t.Fatal(err)
			}
			for name, roots := range map[string][]byte{"old CA copy": oldPEM, "new CA": newPEM} {
				if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: poolOf(t, roots), DNSName: "ecr.box.internal"}); err != nil {
					t.Errorf("serving certificate against the %s: %v", name, err)
				}
			}
			// A certificate for another device of the domain does not
			// verify against the new CA.
			other, _, err := st2.CA.issueServerCertUnchecked("ecr.other.internal")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Verify(x509.VerifyOptions{Roots: poolOf(t, newPEM), DNSName: "ecr.other.internal"}); err == nil {
				t.Error("the re-issued CA certifies ecr.other.internal")
			}
			// Once is enough.
			if _, err := Ensure(dir, InitOptions{}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if string(mustRead(t, filepath.Join(dir, caCertFile))) != string(newPEM) {
				t.Fatal("ca.crt re-issued again")
			}
		})
	}
}

// issueServerCertUnchecked signs a certificate for host bypassing
// checkConstraints, as a thief of ca.key would.
func (ca *CA) issueServerCertUnchecked(host string) (*x509.Certificate, []byte, error) {
	tmpl := &x509.Certificate{SerialNumber: big1(), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{host}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ca.Key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, der, err
}
