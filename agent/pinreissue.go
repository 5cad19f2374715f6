package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// An edgecrd that predates name constraints re-issues its CA certificate
// under the same key (server/caconstrain.go): the pin, a hash of the
// certificate, changes, but a joined client's trust does not, since the
// device's certificate still verifies against the CA copy the client
// installed. Leave uses that copy to reach the device and revoke itself.

// AcceptReissuedCA makes the client also accept a device whose chain
// verifies against caPEM, the CA copy a joined entry holds, for the
// device's own key and subject: the same trust the OS store gives it.
func (c *DeviceClient) AcceptReissuedCA(caPEM []byte) error {
	der, _, err := ParseCAPEM(caPEM)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parsing CA certificate: %w", err)
	}
	c.pin.reissued = ca
	return nil
}

// verifyReissued accepts chain when its leaf verifies, for server auth,
// against ca as the only root.
func verifyReissued(ca *x509.Certificate, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("verifying the device: it presented no certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
