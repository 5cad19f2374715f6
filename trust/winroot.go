package trust

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
)

// WindowsRoot is the Windows LocalMachine ROOT store as crypt32 exposes it
// (CertOpenStore with CERT_SYSTEM_STORE_LOCAL_MACHINE). Errors are those
// the calls set (syscall.Errno, an HRESULT): Find and Delete fail with
// CRYPT_E_NOT_FOUND when the store has no certificate of that SHA-1 hash
// (CertFindCertificateInStore, learn.microsoft.com). NewStore uses crypt32
// on Windows; WithWindowsRoot substitutes a fake.
type WindowsRoot interface {
	Find(sha1 [sha1.Size]byte) error
	Add(der []byte) error
	Delete(sha1 [sha1.Size]byte) error
}

// The HRESULTs that mean "no such certificate": CRYPT_E_NOT_FOUND is what
// CertFindCertificateInStore sets; NTE_NOT_FOUND ("Object was not found")
// is what certutil -store Root <hash> reports for an absent root on current
// Windows (issue 17), accepted so that either layer's answer means absent.
const (
	cryptENotFound = syscall.Errno(0x80092004)
	nteNotFound    = syscall.Errno(0x80090011)
)

// isNotFound reports whether err is one of the not-found HRESULTs.
func isNotFound(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == cryptENotFound || errno == nteNotFound)
}

// WithWindowsRoot makes a Windows store use w instead of crypt32.
func WithWindowsRoot(w WindowsRoot) Option { return func(o *options) { o.winRoot = w } }

// newWindowsStore is the LocalMachine ROOT store: a certificate there is
// trusted for every user and service (smallstep/truststore and certutil
// -user use the current user's store instead).
func newWindowsStore(w WindowsRoot, log *slog.Logger) *thumbprintStore {
	present := func(_ context.Context, c caCert) (bool, error) {
		err := w.Find(sha1.Sum(c.der))
		switch {
		case err == nil:
			return true, nil
		case isNotFound(err):
			return false, nil
		default:
			return false, fmt.Errorf("querying the Windows LocalMachine Root store: %w", err)
		}
	}
	return &thumbprintStore{
		where: "Windows LocalMachine Root store", log: log,
		trusted: present, held: present,
		add: func(_ context.Context, _ string, c caCert) error {
			log.Debug("adding root certificate", "sha1", c.sha1)
			return w.Add(c.der)
		},
		remove: func(_ context.Context, name string, c caCert) (bool, error) {
			log.Debug("deleting root certificate", "sha1", c.sha1)
			err := w.Delete(sha1.Sum(c.der))
			switch {
			case err == nil:
				return true, nil
			case isNotFound(err):
				return false, nil
			default:
				return false, fmt.Errorf("removing %s from Windows LocalMachine Root store: %w", name, err)
			}
		},
	}
}
