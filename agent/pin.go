package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
)

// ErrPinMismatch is matched (errors.Is) by a *PinMismatchError.
var ErrPinMismatch = errors.New("CA pin mismatch")

// PinMismatchError means the device presented, or returned, a CA other than
// the one the join token pins: the man-in-the-middle case.
type PinMismatchError struct {
	Got, Want string // lower-case hex SHA-256
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("CA pin mismatch: got sha256:%s, want sha256:%s", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrPinMismatch) true.
func (e *PinMismatchError) Is(target error) bool { return target == ErrPinMismatch }

// Fingerprint is the pin of a certificate: the lower-case hex SHA-256 of
// its DER.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// ParseCAPEM accepts PEM holding exactly one certificate and returns its DER
// and its canonical PEM (one CERTIFICATE block, no headers), which is what
// every trust store gets.
func ParseCAPEM(b []byte) (der, canonical []byte, err error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, errors.New("parsing CA certificate: no PEM CERTIFICATE block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, nil, errors.New("parsing CA certificate: more than one PEM block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return block.Bytes, pemOf(block.Bytes), nil
}

// checkPinnedPEM parses caPEM and checks that it is the pinned CA.
func checkPinnedPEM(caPEM []byte, pin string) (canonical []byte, err error) {
	der, canonical, err := ParseCAPEM(caPEM)
	if err != nil {
		return nil, err
	}
	if got := Fingerprint(der); got != pin {
		return nil, &PinMismatchError{Got: got, Want: pin}
	}
	return canonical, nil
}

// verifyPinned accepts a server chain only if one of its certificates is
// the pinned CA and the leaf verifies against that CA (for server auth).
// The host name is not checked: the pin is the trust anchor, as in k3s and
// kubeadm, and the client may reach the device by an address that is not in
// its certificate.
func verifyPinned(pin string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("verifying the device: it presented no certificate")
	}
	var ca *x509.Certificate
	for _, c := range chain {
		if Fingerprint(c.Raw) == pin {
			ca = c
			break
		}
	}
	if ca == nil {
		return &PinMismatchError{Got: Fingerprint(chain[len(chain)-1].Raw), Want: pin}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != ca {
			inter.AddCert(c)
		}
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("verifying the device's certificate against the pinned CA: %w", err)
	}
	return nil
}

// pinnedTLS returns a TLS client configuration that completes a handshake
// only with a server whose chain passes verifyPinned, so that nothing is
// sent before the device proved it holds a certificate of the pinned CA.
// The leaf of the last verified handshake is kept for peer.
type pinnedTLS struct {
	pin string
	// reissued, when set, is the CA copy this client trusts (a joined
	// entry's): a chain that verifies against it passes too, for a device
	// whose CA certificate was re-issued under the same key (see
	// verifyReissued).
	reissued *x509.Certificate

	mu   sync.Mutex
	leaf *x509.Certificate
}

func (p *pinnedTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is not skipped: VerifyConnection below replaces the
		// name-based check with the pin, on every handshake (resumed ones too).
		InsecureSkipVerify: true, //nolint:gosec // see VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPinned(p.pin, cs.PeerCertificates); err != nil {
				if p.reissued == nil || verifyReissued(p.reissued, cs.PeerCertificates) != nil {
					return err
				}
			}
			p.mu.Lock()
			p.leaf = cs.PeerCertificates[0]
			p.mu.Unlock()
			return nil
		},
	}
}

func (p *pinnedTLS) peer() *x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaf
}

// pemOf is der as one PEM CERTIFICATE block.
func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
