package trust

import (
	"fmt"
	"os"
)

// stagePEM writes the certificate to a private temp file for a tool that
// imports from a file, and returns a cleanup func.
func stagePEM(dir string, c caCert) (string, func(), error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "edgecr-ca-*.pem")
	if err != nil {
		return "", func() {}, fmt.Errorf("staging CA certificate: %w", err)
	}
	name := f.Name()
	cleanup := func() { _ = os.Remove(name) }
	if _, err := f.Write(c.pem); err != nil {
		_ = f.Close()
		cleanup()
		return "", func() {}, fmt.Errorf("staging CA certificate in %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("staging CA certificate in %s: %w", name, err)
	}
	return name, cleanup, nil
}
