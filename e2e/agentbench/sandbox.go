package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A sandbox is a client machine as e2e/join_test.go prepares one: a root
// directory standing for "/" (Debian: os-release, hosts file, a trust store
// that update-ca-certificates, relocated with its flags, has built, and the
// Docker, containerd and podman configuration directories), a Docker config
// directory and an empty credential store outside it.
//
// A storeTemplate is such a root, prepared once per trust store; each
// iteration works on a copy of it (copyTree), so that every join starts from
// the same fresh root without paying for the store's preparation.
type storeTemplate struct {
	key    string // short name for progress lines
	label  string // for the report: what the distribution CAs are
	root   string // template root
	bundle []byte // etc/ssl/certs/ca-certificates.crt as prepared
	cas    int    // certificates in bundle
}

// userHosts is the sandbox's hosts file before join.
const userHosts = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n# the user's own comment\n10.9.9.9 printer.lan\n"

// sandboxDirs are created in every root, as in e2e/join_test.go: the trust
// store's directories and the runtimes' configuration directories (their
// presence is what makes the agent configure Docker, containerd and podman).
var sandboxDirs = []string{
	"etc/ssl/certs", "usr/local/share/ca-certificates", "usr/share/ca-certificates",
	"etc/ca-certificates/update.d", "etc/docker", "etc/containerd", "etc/containers",
}

// debianRelocation is update-ca-certificates' relocation to root, as the
// agent passes it (trust.debianRelocation) and e2e/join_test.go prepares the
// sandbox: the hooks directory is the root's own (empty), so that no hook of
// this machine runs.
func debianRelocation(root string) []string {
	return []string{
		"--certsconf", filepath.Join(root, "etc/ca-certificates.conf"),
		"--certsdir", filepath.Join(root, "usr/share/ca-certificates"),
		"--localcertsdir", filepath.Join(root, "usr/local/share/ca-certificates"),
		"--etccertsdir", filepath.Join(root, "etc/ssl/certs"),
		"--hooksdir", filepath.Join(root, "etc/ca-certificates/update.d"),
	}
}

// oneCATemplate is the e2e tests' sandbox: one distribution CA, generated.
func oneCATemplate(ctx context.Context, uca, dir string) (*storeTemplate, error) {
	root := filepath.Join(dir, "root")
	if err := skeleton(root); err != nil {
		return nil, err
	}
	ca, err := selfSignedPEM("distro root")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"usr/share/ca-certificates/distro/distro-root.crt": ca,
		"etc/ca-certificates.conf":                         []byte("distro/distro-root.crt\n"),
	}
	if err := writeFiles(root, files); err != nil {
		return nil, err
	}
	return finishTemplate(ctx, uca, "1ca", "1 CA (the e2e tests' sandbox)", root)
}

// distroTemplate is a sandbox whose distribution CAs are copied from casDir
// (this machine's /usr/share/ca-certificates) and casConf: what
// update-ca-certificates processes on a real Debian or Ubuntu machine.
func distroTemplate(ctx context.Context, uca, dir, casDir, casConf string) (*storeTemplate, error) {
	root := filepath.Join(dir, "root")
	if err := skeleton(root); err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(casConf)
	if err != nil {
		return nil, fmt.Errorf("reading -cas-conf: %w", err)
	}
	dst := filepath.Join(root, "usr/share/ca-certificates")
	// Follow symlinks: the certificates are what matters, not how the
	// distribution links them.
	err = filepath.WalkDir(casDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !strings.HasSuffix(p, ".crt") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(casDir, p)
		if err != nil {
			return err
		}
		t := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
			return err
		}
		return os.WriteFile(t, b, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("copying -cas %s: %w", casDir, err)
	}
	if err := writeFiles(root, map[string][]byte{"etc/ca-certificates.conf": conf}); err != nil {
		return nil, err
	}
	t, err := finishTemplate(ctx, uca, "distro", "", root)
	if err != nil {
		return nil, err
	}
	t.label = fmt.Sprintf("%d CAs (this machine's %s)", t.cas, casDir)
	return t, nil
}

// skeleton creates the root's directories, os-release and hosts file.
func skeleton(root string) error {
	for _, d := range sandboxDirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("preparing sandbox: %w", err)
		}
	}
	return writeFiles(root, map[string][]byte{
		"etc/os-release": []byte("ID=debian\nVERSION_ID=12\n"),
		"etc/hosts":      []byte(userHosts),
	})
}

// finishTemplate builds the root's trust store as the distribution's
// package would (update-ca-certificates --fresh, relocated) and records the
// bundle.
func finishTemplate(ctx context.Context, uca, key, label, root string) (*storeTemplate, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := append(debianRelocation(root), "--fresh")
	if out, err := exec.CommandContext(ctx, uca, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("preparing the sandbox trust store (%s %s): %w\n%s", uca, strings.Join(args, " "), err, out)
	}
	bundle, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		return nil, fmt.Errorf("preparing the sandbox trust store: %w", err)
	}
	n := bytes.Count(bundle, []byte("-----BEGIN CERTIFICATE-----"))
	if n == 0 {
		return nil, fmt.Errorf("preparing the sandbox trust store: the bundle holds no certificate")
	}
	return &storeTemplate{key: key, label: label, root: root, bundle: bundle, cas: n}, nil
}

func writeFiles(root string, files map[string][]byte) error {
	for rel, b := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("preparing sandbox: %w", err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("preparing sandbox: %w", err)
		}
	}
	return nil
}

// copyTree copies the tree at src to dst (which must not exist): directories
// and files with their permissions, and symbolic links, where a link into
// src is pointed at the same path under dst. update-ca-certificates links
// /etc/ssl/certs/<name>.pem to the certificate by absolute path, so the
// copy is the store the tool would have built under dst.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		t := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(link) {
				if r, err := filepath.Rel(src, link); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					link = filepath.Join(dst, r)
				}
			}
			return os.Symlink(link, t)
		case e.IsDir():
			return os.Mkdir(t, info.Mode().Perm())
		case e.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(t, b, info.Mode().Perm())
		}
		return fmt.Errorf("copying %s: unexpected file type %v", p, e.Type())
	})
}

// client is one sandboxed client: a fresh copy of a template root, a Docker
// config directory with a config.json, an empty credential store, and the
// environment the commands run with.
type client struct {
	dir, root, dockerDir, credDir string
	env                           []string
	cas                           int // certificates in the bundle before join
}

// newClient copies tmpl into a fresh client directory dir.
func newClient(tmpl *storeTemplate, dir, binDir string) (*client, error) {
	c := &client{dir: dir, root: filepath.Join(dir, "root"), dockerDir: filepath.Join(dir, "docker"), credDir: filepath.Join(dir, "cred"), cas: tmpl.cas}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("preparing client: %w", err)
	}
	if err := copyTree(tmpl.root, c.root); err != nil {
		return nil, fmt.Errorf("copying the sandbox root: %w", err)
	}
	if err := os.MkdirAll(c.dockerDir, 0o700); err != nil {
		return nil, fmt.Errorf("preparing client: %w", err)
	}
	cfg := "{\n  \"auths\": {},\n  \"x-user-setting\": {\"keep\": [1, 2]}\n}\n"
	if err := os.WriteFile(filepath.Join(c.dockerDir, "config.json"), []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("preparing client: %w", err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, fmt.Errorf("preparing client: %w", err)
	}
	c.env = sandboxEnv(os.Environ(), map[string]string{
		"DOCKER_CONFIG":     c.dockerDir,
		"EDGECR_CONFIG_DIR": c.credDir,
		"HOME":              home,
		"PATH":              binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	})
	return c, nil
}

// sandboxEnv is env with set applied, and without sudo's variables: under
// sudo the agent would configure $SUDO_USER's files instead of the sandbox's.
func sandboxEnv(env []string, set map[string]string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok || strings.HasPrefix(k, "SUDO_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

func (c *client) bundle() ([]byte, error) {
	return os.ReadFile(filepath.Join(c.root, "etc/ssl/certs/ca-certificates.crt"))
}

// remove deletes the client's directory.
func (c *client) remove() error { return os.RemoveAll(c.dir) }

func selfSignedPEM(cn string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, errors.Join(errors.New("creating the sandbox's distribution CA"), err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
