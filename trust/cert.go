package trust

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // SHA-1 is the thumbprint macOS and Windows identify certificates by.
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
)

// caCert is a parsed CA certificate in the forms the stores need.
type caCert struct {
	der  []byte
	pem  []byte // canonical PEM: one CERTIFICATE block, no headers
	sha1 string // upper-case hex thumbprint, as macOS and Windows print it
}

// parseCA accepts exactly one PEM CERTIFICATE block (surrounding whitespace
// allowed) holding a parseable X.509 certificate.
func parseCA(b []byte) (caCert, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return caCert{}, fmt.Errorf("decoding PEM: %w: no PEM block", ErrInvalidCertificate)
	}
	if block.Type != "CERTIFICATE" {
		return caCert{}, fmt.Errorf("decoding PEM: %w: block type %q, want CERTIFICATE", ErrInvalidCertificate, block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return caCert{}, fmt.Errorf("decoding PEM: %w: want exactly one certificate", ErrInvalidCertificate)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return caCert{}, fmt.Errorf("parsing certificate: %w: %w", ErrInvalidCertificate, err)
	}
	sum := sha1.Sum(block.Bytes) //nolint:gosec // thumbprint, not a security decision.
	return caCert{
		der:  block.Bytes,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}),
		sha1: fmt.Sprintf("%X", sum[:]),
	}, nil
}

// containsCert reports whether the PEM bundle holds a certificate with the
// given DER bytes. Non-certificate blocks and text between blocks are ignored,
// as TLS libraries do.
func containsCert(bundle, der []byte) bool {
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" && bytes.Equal(block.Bytes, der) {
			return true
		}
	}
}

// removeCert returns bundle without the PEM blocks of the certificate der,
// everything else byte for byte, and whether it removed one.
func removeCert(bundle, der []byte) ([]byte, bool) {
	var out []byte
	removed := false
	rest := bundle
	for {
		block, after := pem.Decode(rest)
		if block == nil {
			return append(out, rest...), removed
		}
		consumed := rest[:len(rest)-len(after)]
		if block.Type == "CERTIFICATE" && bytes.Equal(block.Bytes, der) {
			// Keep what precedes the block (Decode skips text before it).
			start := bytes.LastIndex(consumed, []byte("-----BEGIN CERTIFICATE-----"))
			out = append(out, consumed[:max(start, 0)]...)
			removed = true
		} else {
			out = append(out, consumed...)
		}
		rest = after
	}
}

// containsThumbprint reports whether tool output mentions the SHA-1
// thumbprint, whatever the tool's spacing and case ("Cert Hash(sha1): 3b 1e
// ..." or "SHA-1 hash: 3B1E...").
func containsThumbprint(out []byte, sha1Hex string) bool {
	norm := make([]byte, 0, len(out))
	for _, c := range out {
		if c == ' ' || c == ':' {
			continue
		}
		norm = append(norm, c)
	}
	return bytes.Contains(bytes.ToUpper(norm), []byte(sha1Hex))
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkName rejects names that are not a plain, portable file name
// component: the name becomes part of a file name in the anchor directory.
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("checking name %q: %w: want letters, digits, '.', '_' or '-'", name, ErrInvalidName)
	}
	return nil
}
