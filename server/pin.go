package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
)

// SPKIPin is curl's --pinnedpubkey form of c's key: "sha256//" and the
// base64 SHA-256 of its DER SubjectPublicKeyInfo.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// ServerKeyPin is SPKIPin of the serving certificate now in the data dir,
// and whether its key is ECDSA P-256 (what the Windows installer can check).
// The serving certificate is renewed with a new key before it expires
// (yearly), so a pin is for a first download soon after it is printed; the
// join itself checks the CA pin in the token.
func (s *State) ServerKeyPin() (pin string, p256 bool, err error) {
	pair, err := s.LoadServerCert()
	if err != nil {
		return "", false, err
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return "", false, fmt.Errorf("parsing server certificate: %w", err)
	}
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	return SPKIPin(c), ok && k.Curve == elliptic.P256(), nil
}
