package trust

import (
	"crypto/sha1"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// systemWindowsRoot is the LocalMachine ROOT store through crypt32.
func systemWindowsRoot() WindowsRoot { return crypt32Root{} }

type crypt32Root struct{}

const certEncoding = windows.X509_ASN_ENCODING | windows.PKCS_7_ASN_ENCODING

// open opens LocalMachine\ROOT; read-only unless write (reading needs no
// elevation, so `edgecr status` works as a user).
func (crypt32Root) open(write bool) (windows.Handle, error) {
	name, err := windows.UTF16PtrFromString("ROOT")
	if err != nil {
		return 0, err
	}
	flags := uint32(windows.CERT_SYSTEM_STORE_LOCAL_MACHINE | windows.CERT_STORE_OPEN_EXISTING_FLAG)
	if !write {
		flags |= windows.CERT_STORE_READONLY_FLAG
	}
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM, 0, 0, flags, uintptr(unsafe.Pointer(name)))
	if err != nil {
		return 0, fmt.Errorf("opening the LocalMachine Root store: %w", err)
	}
	return h, nil
}

// find returns the certificate context of the hash; the caller frees it.
func find(store windows.Handle, hash [sha1.Size]byte) (*windows.CertContext, error) {
	blob := windows.CryptHashBlob{Size: sha1.Size, Data: &hash[0]}
	return windows.CertFindCertificateInStore(store, certEncoding, 0, windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&blob), nil)
}

// Find implements WindowsRoot.
func (r crypt32Root) Find(hash [sha1.Size]byte) error {
	store, err := r.open(false)
	if err != nil {
		return err
	}
	defer windows.CertCloseStore(store, 0)
	cert, err := find(store, hash)
	if err != nil {
		return err
	}
	windows.CertFreeCertificateContext(cert)
	return nil
}

// Add implements WindowsRoot: CertAddEncodedCertificateToStore's two halves
// (x/sys has CertCreateCertificateContext and
// CertAddCertificateContextToStore), replacing an existing copy.
func (r crypt32Root) Add(der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("adding a certificate: %w: empty", ErrInvalidCertificate)
	}
	store, err := r.open(true)
	if err != nil {
		return err
	}
	defer windows.CertCloseStore(store, 0)
	cert, err := windows.CertCreateCertificateContext(certEncoding, &der[0], uint32(len(der)))
	if err != nil {
		return fmt.Errorf("decoding the certificate: %w", err)
	}
	defer windows.CertFreeCertificateContext(cert)
	if err := windows.CertAddCertificateContextToStore(store, cert, windows.CERT_STORE_ADD_REPLACE_EXISTING, nil); err != nil {
		return fmt.Errorf("adding the certificate to the LocalMachine Root store: %w", err)
	}
	return nil
}

// Delete implements WindowsRoot. CertDeleteCertificateFromStore frees the
// context it is given, also on failure.
func (r crypt32Root) Delete(hash [sha1.Size]byte) error {
	store, err := r.open(true)
	if err != nil {
		return err
	}
	defer windows.CertCloseStore(store, 0)
	cert, err := find(store, hash)
	if err != nil {
		return err
	}
	if err := windows.CertDeleteCertificateFromStore(cert); err != nil {
		return fmt.Errorf("deleting the certificate from the LocalMachine Root store: %w", err)
	}
	return nil
}
