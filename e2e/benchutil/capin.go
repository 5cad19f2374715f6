package benchutil

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
)

// PinnedCA reads the answer of a device's /edgecr/v1/ca and returns a pool
// of that CA once its fingerprint is pin (as edgecrd info prints it).
func PinnedCA(resp *http.Response, pin string) (*x509.CertPool, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetching the device CA: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("the device CA endpoint answered %s without PEM", resp.Status)
	}
	sum := sha256.Sum256(blk.Bytes)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != pin {
		return nil, fmt.Errorf("the device CA endpoint's CA is %s, edgecrd info says %s", got, pin)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	return roots, nil
}
