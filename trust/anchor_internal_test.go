package trust

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// Internal tests cannot use trusttest (it imports this package), so they
// carry a small recording runner and CA generator of their own.

type recRunner struct {
	mu      sync.Mutex
	calls   [][]string
	respond func(name string, args []string) ([]byte, error)
}

func (r *recRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, append([]string{name}, args...))
	r.mu.Unlock()
	if r.respond == nil {
		return nil, nil
	}
	return r.respond(name, args)
}

func (r *recRunner) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func newTestCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "internal test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := os.Lstat(p)
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			m[rel] = fmt.Sprint("dir ", fi.Mode().Perm())
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = fmt.Sprint("file ", fi.Mode().Perm(), " ", string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// extractEmulator stands in for update-ca-trust / trust extract-compat /
// Alpine's update-ca-certificates: the bundle becomes the concatenation of
// the anchors. It only accepts the exact command line of the layout.
func extractEmulator(t *testing.T, root string, l linuxLayout) func(string, []string) ([]byte, error) {
	return func(name string, args []string) ([]byte, error) {
		argv := append([]string{name}, args...)
		in, out := l.commands("/")
		if !slices.Equal(argv, in) && !slices.Equal(argv, out) {
			return nil, fmt.Errorf("emulator: unexpected %v", argv)
		}
		anchors, _ := filepath.Glob(filepath.Join(rooted(root, l.anchorDir), "*"))
		slices.Sort(anchors)
		var bundle bytes.Buffer
		for _, a := range anchors {
			b, err := os.ReadFile(a)
			if err != nil {
				return nil, err
			}
			bundle.Write(b)
		}
		dst := rooted(root, l.bundle)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		return nil, os.WriteFile(dst, bundle.Bytes(), 0o644)
	}
}

// TestAnchorStoresAsOnLiveSystem runs each Linux store with its live-system
// command lines (the layout is told the temp root needs no relocation flags),
// so the commands RHEL, Arch and Alpine run are exercised without touching
// this machine.
func TestAnchorStoresAsOnLiveSystem(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		kind              Kind
		file              string
		install, uninstal []string
	}{
		{Debian, "usr/local/share/ca-certificates/edgecr-dev1.crt", []string{"update-ca-certificates"}, []string{"update-ca-certificates", "--fresh"}},
		{Alpine, "usr/local/share/ca-certificates/edgecr-dev1.crt", []string{"update-ca-certificates"}, []string{"update-ca-certificates", "--fresh"}},
		{RHEL, "etc/pki/ca-trust/source/anchors/edgecr-dev1.crt", []string{"update-ca-trust", "extract"}, []string{"update-ca-trust", "extract"}},
		{Arch, "etc/ca-certificates/trust-source/anchors/edgecr-dev1.crt", []string{"trust", "extract-compat"}, []string{"trust", "extract-compat"}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			root := t.TempDir()
			l := linuxLayouts[tc.kind]
			l.relocate = func(string) []string { return nil }
			if err := os.MkdirAll(rooted(root, l.anchorDir), 0o755); err != nil {
				t.Fatal(err)
			}
			r := &recRunner{respond: extractEmulator(t, root, linuxLayouts[tc.kind])}
			if _, err := r.Run(ctx, tc.install[0], tc.install[1:]...); err != nil { // the system's initial extract
				t.Fatal(err)
			}
			r.take()
			s := &anchorStore{layout: l, root: root, run: r, log: discard()}
			ca := newTestCA(t)
			before := treeOf(t, root)

			if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Install = %v, %v", changed, err)
			}
			if got := r.take(); !reflect.DeepEqual(got, [][]string{tc.install}) {
				t.Errorf("Install ran %v, want %v", got, tc.install)
			}
			if b, err := os.ReadFile(filepath.Join(root, tc.file)); err != nil || !bytes.Equal(b, ca) {
				t.Errorf("anchor %s = %q, %v", tc.file, b, err)
			}
			if ok, err := s.Installed(ctx, "dev1", ca); !ok || err != nil {
				t.Errorf("Installed = %v, %v", ok, err)
			}
			if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
				t.Errorf("second Install = %v, %v; want false", changed, err)
			}
			if got := r.take(); len(got) != 0 {
				t.Errorf("second Install ran %v", got)
			}
			if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Uninstall = %v, %v", changed, err)
			}
			if got := r.take(); !reflect.DeepEqual(got, [][]string{tc.uninstal}) {
				t.Errorf("Uninstall ran %v, want %v", got, tc.uninstal)
			}
			after := treeOf(t, root)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("tree changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// A relocated RHEL, Arch or Alpine root gets its anchor file but no refresh.
func TestAnchorStoreRelocatedWithoutRefresh(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []Kind{Alpine, RHEL, Arch} {
		t.Run(string(kind), func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(rooted(root, linuxLayouts[kind].anchorDir), 0o755); err != nil {
				t.Fatal(err)
			}
			r := &recRunner{}
			s, err := NewStore(kind, root, r)
			if err != nil {
				t.Fatal(err)
			}
			ca := newTestCA(t)
			before := treeOf(t, root)
			if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Install = %v, %v", changed, err)
			}
			if ok, _ := s.Installed(ctx, "dev1", ca); !ok {
				t.Errorf("Installed = false")
			}
			if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Uninstall = %v, %v", changed, err)
			}
			if got := r.take(); len(got) != 0 {
				t.Errorf("ran %v against a relocated %s root", got, kind)
			}
			if after := treeOf(t, root); !reflect.DeepEqual(before, after) {
				t.Errorf("tree changed: %v -> %v", before, after)
			}
		})
	}
}

func TestContainsThumbprint(t *testing.T) {
	const sha = "3B1EFD3A66EA28B16697394703A72CA340A05BD5"
	for out, want := range map[string]bool{
		"SHA-1 hash: 3B1EFD3A66EA28B16697394703A72CA340A05BD5\n":                          true,
		"Cert Hash(sha1): 3b1efd3a66ea28b16697394703a72ca340a05bd5\n":                     true,
		"Cert Hash(sha1): 3b 1e fd 3a 66 ea 28 b1 66 97 39 47 03 a7 2c a3 40 a0 5b d5\n":  true,
		"SHA-1 hash: 3B1EFD3A66EA28B16697394703A72CA340A05BD6\n":                          false,
		"CertUtil: -store command FAILED: 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)\r\n": false,
	} {
		if got := containsThumbprint([]byte(out), sha); got != want {
			t.Errorf("containsThumbprint(%q) = %v, want %v", out, got, want)
		}
	}
}

func TestRooted(t *testing.T) {
	for _, tc := range []struct{ root, p, want string }{
		{"/", "/etc/docker", "/etc/docker"},
		{"", "/etc/docker", "/etc/docker"},
		{"/target", "/etc/docker", "/target/etc/docker"},
		{"/target/", "/etc/../etc/docker", "/target/etc/docker"},
	} {
		if got := rooted(tc.root, tc.p); got != filepath.FromSlash(tc.want) {
			t.Errorf("rooted(%q, %q) = %q, want %q", tc.root, tc.p, got, tc.want)
		}
	}
	if got := rooted("/target", "/../../etc"); got != filepath.FromSlash("/target/etc") {
		t.Errorf("rooted escaped the root: %q", got)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestRemoveCert(t *testing.T) {
	ours, theirs := newTestCA(t), newTestCA(t)
	c, err := parseCA(ours)
	if err != nil {
		t.Fatal(err)
	}
	bundle := slices.Concat([]byte("# head\n"), theirs, ours, []byte("between\n"), ours, theirs)
	out, removed := removeCert(bundle, c.der)
	if want := slices.Concat([]byte("# head\n"), theirs, []byte("between\n"), theirs); !removed || !bytes.Equal(out, want) {
		t.Errorf("removeCert = %v\n%s\nwant\n%s", removed, out, want)
	}
	if out, removed := removeCert(theirs, c.der); removed || !bytes.Equal(out, theirs) {
		t.Errorf("removeCert of a bundle without it = %v\n%s", removed, out)
	}
	if out, removed := removeCert(ours, c.der); !removed || len(out) != 0 {
		t.Errorf("removeCert of the only certificate = %v %q", removed, out)
	}
}
