package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{key, cert}
}

func (ca testCA) leaf(t *testing.T, eku x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ecr.box.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, DNSNames: []string{"ecr.box.internal"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestVerifyPinned(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	pin := Fingerprint(ca.cert.Raw)
	leaf, otherLeaf := ca.leaf(t, x509.ExtKeyUsageServerAuth), other.leaf(t, x509.ExtKeyUsageServerAuth)
	tests := []struct {
		name  string
		chain []*x509.Certificate
		err   string
	}{
		{"leaf and pinned CA", []*x509.Certificate{leaf, ca.cert}, ""},
		{"another CA", []*x509.Certificate{otherLeaf, other.cert}, "CA pin mismatch: got sha256:" + Fingerprint(other.cert.Raw) + ", want sha256:" + pin},
		{"pinned CA sent with a leaf it did not sign", []*x509.Certificate{otherLeaf, ca.cert}, "not signed|verifying the device's certificate"},
		{"leaf only", []*x509.Certificate{leaf}, "CA pin mismatch"},
		{"client-auth leaf", []*x509.Certificate{ca.leaf(t, x509.ExtKeyUsageClientAuth), ca.cert}, "verifying the device's certificate"},
		{"nothing", nil, "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyPinned(pin, tt.chain)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			matched := false
			for _, alt := range strings.Split(tt.err, "|") {
				matched = matched || strings.Contains(err.Error(), alt)
			}
			if !matched {
				t.Errorf("error = %q, want %q", err, tt.err)
			}
		})
	}
	if err := verifyPinned(pin, []*x509.Certificate{otherLeaf, other.cert}); !errors.Is(err, ErrPinMismatch) {
		t.Errorf("errors.Is(ErrPinMismatch) = false for %v", err)
	}
}

func TestParseCAPEM(t *testing.T) {
	ca := newTestCA(t)
	p := "\n" + string(pemOf(ca.cert.Raw)) + "\n"
	der, canonical, err := ParseCAPEM([]byte(p))
	if err != nil || Fingerprint(der) != Fingerprint(ca.cert.Raw) || string(canonical) != string(pemOf(ca.cert.Raw)) {
		t.Errorf("ParseCAPEM = %v", err)
	}
	for _, bad := range []string{"", "junk", p + p} {
		if _, _, err := ParseCAPEM([]byte(bad)); err == nil {
			t.Errorf("ParseCAPEM(%q) accepted", bad)
		}
	}
}
