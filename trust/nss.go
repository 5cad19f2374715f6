package trust

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Browsers on Linux (Chromium, Chrome, Firefox) do not read the OS trust
// store: each keeps CA trust in an NSS database of its own, in the user's
// home. NSS adds and removes the device CA there with certutil
// (libnss3-tools), as mkcert and smallstep/truststore do: Chromium's
// ~/.pki/nssdb and every Firefox profile, including the snap and Flatpak
// ones. Only databases in the current SQL format (cert9.db) are touched;
// none is created (a browser creates its own on first start).

// nssDirs are the NSS databases' places under a home directory; a "*" is
// a Firefox profile.
var nssDirs = []string{
	".pki/nssdb",                                      // Chromium, Chrome
	"snap/chromium/current/.pki/nssdb",                // Chromium snap
	".mozilla/firefox/*",                              // Firefox
	"snap/firefox/common/.mozilla/firefox/*",          // Firefox snap
	".var/app/org.mozilla.firefox/.mozilla/firefox/*", // Firefox Flatpak
	".var/app/org.chromium.Chromium/.pki/nssdb",       // Chromium Flatpak
}

// NSSTrustFlags trust a certificate as a CA for TLS servers, as mkcert
// does.
const NSSTrustFlags = "C,,"

// NSS is the user's browsers' NSS databases, changed with certutil. It
// finds the databases under Home; Run runs certutil (under sudo: as the
// user, so that root never writes in the user's home and every file keeps
// its owner, see ExecAsUser).
type NSS struct {
	Home string
	Run  Runner
	// TempDir is where the CA is staged for certutil -i (default
	// os.TempDir()); the file is world-readable, as a CA certificate is
	// public, so that certutil running as the user can read it.
	TempDir string
	Log     *slog.Logger
}

// FindNSSDBs returns the NSS databases (directories holding cert9.db)
// under home, sorted. glob is filepath.Glob in production.
func FindNSSDBs(home string, glob func(string) ([]string, error)) ([]string, error) {
	if home == "" {
		return nil, errors.New("finding browsers' NSS databases: no home directory")
	}
	var out []string
	for _, d := range nssDirs {
		matches, err := glob(filepath.Join(home, d, "cert9.db"))
		if err != nil {
			return nil, fmt.Errorf("finding browsers' NSS databases: %w", err)
		}
		for _, m := range matches {
			out = append(out, filepath.Dir(m))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Find returns the NSS databases in the user's home.
func (n *NSS) Find() ([]string, error) { return FindNSSDBs(n.Home, filepath.Glob) }

func nssArg(dir string) string { return "sql:" + dir }

// Installed reports whether the database at dir holds pem's certificate
// under name. Another certificate under that name is not it.
func (n *NSS) Installed(ctx context.Context, dir, name string, pemBytes []byte) (bool, error) {
	c, err := parseCA(pemBytes)
	if err != nil {
		return false, err
	}
	_, ours, err := n.lookup(ctx, dir, name, c.der)
	return ours, err
}

// lookup reports whether the database at dir has a certificate named
// name, and whether der is among those.
func (n *NSS) lookup(ctx context.Context, dir, name string, der []byte) (named, ours bool, err error) {
	out, err := run(ctx, n.Run, []string{"certutil", "-L", "-d", nssArg(dir), "-n", name, "-a"})
	if err != nil {
		if nssNotFound(out, err) {
			return false, false, nil
		}
		return false, false, fmt.Errorf("reading NSS database %s: %w", dir, err)
	}
	return true, containsCert(out, der), nil
}

// nssNotFound reports whether certutil failed because no certificate has
// the nickname: the answer "not installed", not an error.
func nssNotFound(out []byte, err error) bool {
	s := strings.ToLower(string(out) + " " + err.Error())
	return strings.Contains(s, "could not find cert")
}

// Install adds pem's certificate to the database at dir under name,
// trusted as a CA for TLS servers, unless it is there already. A different
// certificate under the same name is an error: it is not edgecr's to
// replace.
func (n *NSS) Install(ctx context.Context, dir, name string, pemBytes []byte) (bool, error) {
	c, err := parseCA(pemBytes)
	if err != nil {
		return false, err
	}
	named, ours, err := n.lookup(ctx, dir, name, c.der)
	switch {
	case err != nil, ours:
		return false, err
	case named:
		return false, fmt.Errorf("adding %s to NSS database %s: another certificate has that nickname", name, dir)
	}
	file, cleanup, err := n.stage(c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	argv := []string{"certutil", "-A", "-d", nssArg(dir), "-t", NSSTrustFlags, "-n", name, "-i", file}
	n.logger().Debug("adding the CA to a browser NSS database", "argv", argv)
	if _, err := run(ctx, n.Run, argv); err != nil {
		return false, fmt.Errorf("adding %s to NSS database %s: %w", name, dir, err)
	}
	return true, nil
}

// Uninstall removes name from the database at dir if it is pem's
// certificate; another certificate under that name stays. A database that
// is gone (the profile was deleted) holds nothing to remove.
func (n *NSS) Uninstall(ctx context.Context, dir, name string, pemBytes []byte) (bool, error) {
	c, err := parseCA(pemBytes)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(dir, "cert9.db")); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	_, ours, err := n.lookup(ctx, dir, name, c.der)
	if err != nil || !ours {
		return false, err
	}
	argv := []string{"certutil", "-D", "-d", nssArg(dir), "-n", name}
	n.logger().Debug("removing the CA from a browser NSS database", "argv", argv)
	if _, err := run(ctx, n.Run, argv); err != nil {
		return false, fmt.Errorf("removing %s from NSS database %s: %w", name, dir, err)
	}
	return true, nil
}

// stage writes the certificate where certutil -i reads it.
func (n *NSS) stage(c caCert) (string, func(), error) {
	f, err := os.CreateTemp(n.TempDir, "edgecr-ca-*.pem")
	if err != nil {
		return "", nil, fmt.Errorf("staging the CA for certutil: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	_, werr := f.Write(c.pem)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o644)); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("staging the CA for certutil: %w", err)
	}
	return f.Name(), cleanup, nil
}

func (n *NSS) logger() *slog.Logger {
	if n.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Log
}
