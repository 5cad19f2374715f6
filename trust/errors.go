package trust

import "errors"

var (
	// ErrUnsupported reports a platform, distribution or root layout this
	// package does not know how to change.
	ErrUnsupported = errors.New("unsupported trust store")

	// ErrToolMissing reports that the command a trust store needs
	// (update-ca-certificates, update-ca-trust, trust, security, launchctl) is
	// not installed or not on PATH.
	ErrToolMissing = errors.New("trust store tool not found")

	// ErrNoTrustStore reports that the trust store's anchor directory does
	// not exist under the root (the ca-certificates package is missing, or
	// the root is not a system image).
	ErrNoTrustStore = errors.New("trust store directory missing")

	// ErrInvalidName reports a store entry name that is not a plain file name.
	ErrInvalidName = errors.New("invalid certificate name")

	// ErrInvalidCertificate reports PEM input that is not exactly one X.509
	// certificate.
	ErrInvalidCertificate = errors.New("invalid CA certificate")

	// ErrInvalidRegistry reports a registry address that is not host[:port].
	ErrInvalidRegistry = errors.New("invalid registry address")

	// ErrForeignFile reports a file in edgecr's way that edgecr did not
	// write; it is left alone.
	ErrForeignFile = errors.New("file exists and was not written by edgecr")

	// ErrMalformedConfig reports a configuration file that does not parse; it
	// is left untouched.
	ErrMalformedConfig = errors.New("malformed configuration file")

	// ErrConflict reports a configuration entry that already says something
	// else for this registry.
	ErrConflict = errors.New("conflicting configuration entry")
)
