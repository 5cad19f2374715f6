package trust

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
)

// linuxLayout is where one Linux trust store keeps local anchors and how it
// is refreshed.
type linuxLayout struct {
	kind      Kind
	anchorDir string   // local anchors, as the system sees it
	bundle    string   // extracted bundle: holds the CA once the refresh ran
	link      string   // per-anchor symlink the refresh leaves behind ("" if none)
	tool      string   // refresh command
	install   []string // refresh arguments after adding an anchor
	uninstall []string // refresh arguments after removing an anchor
	// relocate returns the tool's flags that point it at a root other than
	// "/"; nil means the tool cannot be relocated.
	relocate func(root string) []string
}

var linuxLayouts = map[Kind]linuxLayout{
	Debian: {
		kind:      Debian,
		anchorDir: "/usr/local/share/ca-certificates",
		bundle:    "/etc/ssl/certs/ca-certificates.crt",
		link:      "/etc/ssl/certs",
		tool:      "update-ca-certificates",
		// Without --fresh, removal leaves the anchor's symlink (and its
		// hash link) dangling in /etc/ssl/certs and the Java keystore entry
		// behind; --fresh rebuilds both from what is left.
		uninstall: []string{"--fresh"},
		relocate:  debianRelocation,
	},
	Alpine: {
		kind:      Alpine,
		anchorDir: "/usr/local/share/ca-certificates",
		bundle:    "/etc/ssl/certs/ca-certificates.crt",
		tool:      "update-ca-certificates",
		uninstall: []string{"--fresh"},
		// Alpine's update-ca-certificates ignores its arguments: relocation
		// flags would be dropped and the live /etc/ssl changed instead.
	},
	RHEL: {
		kind:      RHEL,
		anchorDir: "/etc/pki/ca-trust/source/anchors",
		bundle:    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
		tool:      "update-ca-trust",
		install:   []string{"extract"},
		uninstall: []string{"extract"},
	},
	Arch: {
		kind:      Arch,
		anchorDir: "/etc/ca-certificates/trust-source/anchors",
		bundle:    "/etc/ca-certificates/extracted/tls-ca-bundle.pem",
		tool:      "trust",
		install:   []string{"extract-compat"},
		uninstall: []string{"extract-compat"},
	},
}

// debianRelocation points Debian's update-ca-certificates (a shell script
// with --certsconf, --certsdir, --localcertsdir, --etccertsdir and
// --hooksdir) at root. The hooks directory is relocated too, so that a
// sandboxed run never triggers the live system's hooks (ca-certificates-java).
func debianRelocation(root string) []string {
	return []string{
		"--certsconf", rooted(root, "/etc/ca-certificates.conf"),
		"--certsdir", rooted(root, "/usr/share/ca-certificates"),
		"--localcertsdir", rooted(root, "/usr/local/share/ca-certificates"),
		"--etccertsdir", rooted(root, "/etc/ssl/certs"),
		"--hooksdir", rooted(root, "/etc/ca-certificates/update.d"),
	}
}

func anchorBase(name string) string { return "edgecr-" + name }

// commands returns the refresh command lines for root, or nil ones when the
// tool cannot be pointed at root.
func (l linuxLayout) commands(root string) (install, uninstall []string) {
	var reloc []string
	if !isLiveRoot(root) {
		if l.relocate == nil {
			return nil, nil
		}
		reloc = l.relocate(root)
	}
	line := func(extra []string) []string {
		argv := append([]string{l.tool}, reloc...)
		return append(argv, extra...)
	}
	return line(l.install), line(l.uninstall)
}

// anchorStore is a Linux trust store: a PEM file in an anchor directory plus
// a refresh command.
type anchorStore struct {
	layout linuxLayout
	root   string
	run    Runner
	log    *slog.Logger
}

func (s *anchorStore) file(name string) string {
	return rooted(s.root, path.Join(s.layout.anchorDir, anchorBase(name)+".crt"))
}

// refreshes reports whether the refresh command runs for this root.
func (s *anchorStore) refreshes() bool {
	in, _ := s.layout.commands(s.root)
	return in != nil
}

// inBundle reports whether the refreshed bundle holds the certificate; when
// the refresh cannot run for this root there is no bundle to trust, and the
// anchor file alone counts.
func (s *anchorStore) inBundle(c caCert) (bool, error) {
	if !s.refreshes() {
		return true, nil
	}
	b, ok, err := readIfExists(rooted(s.root, s.layout.bundle))
	if err != nil || !ok {
		return false, err
	}
	return containsCert(b, c.der), nil
}

// Installed implements Store: the anchor file holds the certificate and, where
// the refresh runs, the extracted bundle does too.
func (s *anchorStore) Installed(_ context.Context, name string, pem []byte) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	c, err := parseCA(pem)
	if err != nil {
		return false, err
	}
	ok, err := sameContent(s.file(name), c.pem)
	if err != nil || !ok {
		return false, err
	}
	return s.inBundle(c)
}

// Install implements Store. It writes the anchor (skipped when identical) and
// runs the refresh unless the bundle already holds the certificate. If the
// refresh tool is missing, a freshly written anchor is taken back.
func (s *anchorStore) Install(ctx context.Context, name string, pem []byte) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	c, err := parseCA(pem)
	if err != nil {
		return false, err
	}
	dir := rooted(s.root, s.layout.anchorDir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return false, fmt.Errorf("installing %s into %s trust store: %w: %s (is the ca-certificates package installed?)", name, s.layout.kind, ErrNoTrustStore, dir)
	}
	file := s.file(name)
	prev, hadPrev, err := readIfExists(file)
	if err != nil {
		return false, err
	}
	fileOK := hadPrev && string(prev) == string(c.pem)
	bundleOK, err := s.inBundle(c)
	if err != nil {
		return false, err
	}
	if fileOK && bundleOK {
		return false, nil
	}
	if !fileOK {
		if err := writeFileAtomic(file, c.pem, 0o644); err != nil {
			return false, fmt.Errorf("installing %s into %s trust store: %w", name, s.layout.kind, err)
		}
	}
	in, _ := s.layout.commands(s.root)
	if in == nil {
		return true, nil
	}
	s.log.Debug("refreshing trust store", "kind", s.layout.kind, "argv", in)
	if _, err := run(ctx, s.run, in); err != nil {
		if errors.Is(err, ErrToolMissing) && !fileOK {
			if rbErr := s.restore(file, prev, hadPrev); rbErr != nil {
				return true, errors.Join(fmt.Errorf("installing %s into %s trust store: %w", name, s.layout.kind, err), rbErr)
			}
			return false, fmt.Errorf("installing %s into %s trust store: %w", name, s.layout.kind, err)
		}
		return true, fmt.Errorf("installing %s into %s trust store: %w", name, s.layout.kind, err)
	}
	return true, nil
}

// restore puts the anchor file back as it was before a failed Install.
func (s *anchorStore) restore(file string, prev []byte, hadPrev bool) error {
	if hadPrev {
		return writeFileAtomic(file, prev, 0o644)
	}
	_, err := removeFile(file)
	return err
}

// Uninstall implements Store. It removes the anchor and refreshes (with
// --fresh on Debian and Alpine) if the anchor was there or the store still
// shows traces of it: the certificate in the bundle, or its symlink. pem may
// be nil on Linux; the bundle is then not inspected.
func (s *anchorStore) Uninstall(ctx context.Context, name string, pem []byte) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	var c *caCert
	if len(pem) > 0 {
		parsed, err := parseCA(pem)
		if err != nil {
			return false, err
		}
		c = &parsed
	}
	removed, err := removeFile(s.file(name))
	if err != nil {
		return false, fmt.Errorf("removing %s from %s trust store: %w", name, s.layout.kind, err)
	}
	_, out := s.layout.commands(s.root)
	if out == nil {
		return removed, nil
	}
	stale, err := s.traces(name, c)
	if err != nil {
		return removed, err
	}
	if !removed && !stale {
		return s.cleanJava(ctx, name)
	}
	s.log.Debug("refreshing trust store", "kind", s.layout.kind, "argv", out)
	if _, err := run(ctx, s.run, out); err != nil {
		return true, fmt.Errorf("removing %s from %s trust store: %w", name, s.layout.kind, err)
	}
	if c != nil {
		if err := s.dropFromBundle(name, *c); err != nil {
			return true, err
		}
	}
	if _, err := s.cleanJava(ctx, name); err != nil {
		return true, err
	}
	return true, nil
}

// dropFromBundle takes the certificate out of the extracted bundle if the
// refresh left it there: Debian's update-ca-certificates writes no bundle
// when no certificate is left at all, so the old one, ours in it, stays.
// The other certificates are kept byte for byte; a bundle with none left is
// removed, as the tool would never have written it.
func (s *anchorStore) dropFromBundle(name string, c caCert) error {
	bundle := rooted(s.root, s.layout.bundle)
	b, ok, err := readIfExists(bundle)
	if err != nil || !ok {
		return err
	}
	out, dropped := removeCert(b, c.der)
	if !dropped {
		return nil
	}
	s.log.Debug("removing the CA from the bundle the refresh kept", "kind", s.layout.kind, "bundle", bundle)
	if block, _ := pem.Decode(out); block == nil {
		_, err = removeFile(bundle)
	} else {
		err = writeFileAtomic(bundle, out, 0o644)
	}
	if err != nil {
		return fmt.Errorf("removing %s from %s trust store: the refresh left it in %s, and taking it out failed: %w", name, s.layout.kind, bundle, err)
	}
	return nil
}

// traces reports whether the refreshed store still shows the anchor after its
// file is gone.
func (s *anchorStore) traces(name string, c *caCert) (bool, error) {
	if s.layout.link != "" {
		if _, err := os.Lstat(rooted(s.root, path.Join(s.layout.link, anchorBase(name)+".pem"))); err == nil {
			return true, nil
		}
	}
	if c == nil {
		return false, nil
	}
	b, ok, err := readIfExists(rooted(s.root, s.layout.bundle))
	if err != nil || !ok {
		return false, err
	}
	return containsCert(b, c.der), nil
}
