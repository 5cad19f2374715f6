package agent

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
)

// A chain of the same key under a re-issued CA certificate passes against
// the stored copy; a CA of another key with the same name does not, nor a
// leaf for client auth only.
func TestVerifyReissued(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	tmpl := *ca.cert
	tmpl.SerialNumber = big.NewInt(99)
	tmpl.PermittedDNSDomains, tmpl.PermittedDNSDomainsCritical = []string{"box.internal"}, true
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	reissued, _ := x509.ParseCertificate(der)
	leaf := ca.leaf(t, x509.ExtKeyUsageServerAuth)
	if verifyPinned(Fingerprint(ca.cert.Raw), []*x509.Certificate{leaf, reissued}) == nil {
		t.Fatal("the old pin matches the re-issued chain: the test proves nothing")
	}
	if err := verifyReissued(ca.cert, []*x509.Certificate{leaf, reissued}); err != nil {
		t.Errorf("re-issued chain: %v", err)
	}
	if err := verifyReissued(ca.cert, []*x509.Certificate{other.leaf(t, x509.ExtKeyUsageServerAuth), other.cert}); err == nil {
		t.Error("a chain of another key with the same CA name passes")
	}
	if err := verifyReissued(ca.cert, []*x509.Certificate{ca.leaf(t, x509.ExtKeyUsageClientAuth), reissued}); err == nil {
		t.Error("a client-auth leaf passes")
	}
	if err := verifyReissued(ca.cert, nil); err == nil {
		t.Error("an empty chain passes")
	}
}
