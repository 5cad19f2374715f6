package trust

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
)

func certutilQuery(sha1 string) []string { return []string{"certutil", "-store", "Root", sha1} }

// certutilAdd imports into the LocalMachine Root store: certutil without
// -user works on the machine stores (smallstep/truststore uses the current
// user's store instead, which services and other users do not see).
func certutilAdd(file string) []string { return []string{"certutil", "-addstore", "-f", "Root", file} }

// certutilDelete deletes by thumbprint; a serial number could match another
// CA's certificate.
func certutilDelete(sha1 string) []string { return []string{"certutil", "-delstore", "Root", sha1} }

// newCertutilStore is the Windows LocalMachine Root store, driven by
// certutil.
func newCertutilStore(r Runner, tempDir string, log *slog.Logger) *thumbprintStore {
	return &thumbprintStore{
		where: "Windows Root store", addMsg: "adding root certificate",
		run: r, tempDir: tempDir, log: log,
		present: certutilPresent,
		add:     certutilAdd,
		remove:  certutilRemove,
	}
}

// certutilPresent asks certutil for the thumbprint. certutil exits non-zero
// with CRYPT_E_NOT_FOUND (0x80092004) when the store does not hold it.
func certutilPresent(ctx context.Context, s *thumbprintStore, c caCert) (bool, error) {
	out, err := run(ctx, s.run, certutilQuery(c.sha1))
	if containsThumbprint(out, c.sha1) {
		return true, nil
	}
	if err == nil {
		return false, nil
	}
	if bytes.Contains(out, []byte("0x80092004")) || bytes.Contains(out, []byte("CRYPT_E_NOT_FOUND")) ||
		strings.Contains(err.Error(), "0x80092004") || strings.Contains(err.Error(), "CRYPT_E_NOT_FOUND") {
		return false, nil
	}
	return false, fmt.Errorf("querying Windows Root store: %w", err)
}

func certutilRemove(ctx context.Context, s *thumbprintStore, name string, c caCert) (bool, error) {
	argv := certutilDelete(c.sha1)
	s.log.Debug("deleting root certificate", "argv", argv)
	if _, err := run(ctx, s.run, argv); err != nil {
		return false, fmt.Errorf("removing %s from Windows Root store: %w", name, err)
	}
	return true, nil
}
