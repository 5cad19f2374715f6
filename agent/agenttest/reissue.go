package agenttest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// ReissueCA re-issues the device's CA certificate under the same key and
// subject, with the constraints of o (as edgecrd does for a CA made before
// name constraints): the device serves and answers with the new
// certificate, whose pin differs, and keeps its serving certificate.
func (d *Device) ReissueCA(t testing.TB, o DeviceOptions) {
	t.Helper()
	old := d.caCert
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano() + 1),
		Subject:               old.Subject,
		SubjectKeyId:          old.SubjectKeyId,
		NotBefore:             old.NotBefore,
		NotAfter:              old.NotAfter,
		KeyUsage:              old.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if o.RegistryHost == "" {
		o.RegistryHost = d.RegistryHost
	}
	o.constraints(t, tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &d.caKey.PublicKey, d.caKey)
	if err != nil {
		t.Fatal(err)
	}
	d.chainMu.Lock()
	d.chain = &tls.Certificate{Certificate: [][]byte{d.chain.Certificate[0], der}, PrivateKey: d.chain.PrivateKey}
	d.chainMu.Unlock()
	d.mu.Lock()
	d.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	d.Pin = hexSum(der)
	d.mu.Unlock()
}
