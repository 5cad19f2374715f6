package migrate_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/edgecr/edgecr/server"
)

// source is a single-node device made the way operators make one: a data
// dir initialised by server.Ensure, images pushed through a real
// server.New with go-containerregistry, a client joined with a token, and
// one more token left unused.
type source struct {
	Dir     string
	State   *server.State
	AdminPW string
	// Images are every pushed manifest and index: ref -> digest.
	Images map[string]v1.Hash
	// Client is a joined client's credential; Token an unused token.
	Client *server.JoinResult
	Token  string
}

// makeSource builds a source device; bigBlob adds one layer bigger than
// a single PutContent (multipart in the bucket).
func makeSource(t *testing.T, bigBlob bool) *source {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	nm := "box1"
	st, err := server.Ensure(dir, server.InitOptions{
		Name:       &nm,
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		DefaultIPs: func() ([]net.IP, error) { return nil, nil },
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pw, err := st.AdminPassword()
	if err != nil {
		t.Fatal(err)
	}
	// As `edgecrd serve` does.
	lock, err := server.LockDataDir(dir, "serve")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, st, server.Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	defer stop()
	s := &source{Dir: dir, State: st, AdminPW: pw, Images: map[string]v1.Hash{}}
	opts := remoteOpts(st, "admin", pw)
	host := srv.Addr().String()
	push := func(ref string, img v1.Image) {
		t.Helper()
		r, err := name.ParseReference(host + "/" + ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img, opts...); err != nil {
			t.Fatalf("pushing %s: %v", ref, err)
		}
		d, _ := img.Digest()
		s.Images[ref] = d
	}
	for i := range 3 {
		img, err := random.Image(4096, 3)
		if err != nil {
			t.Fatal(err)
		}
		push(fmt.Sprintf("apps/web:v%d", i), img)
	}
	if bigBlob {
		img, err := random.Image(12<<20, 1)
		if err != nil {
			t.Fatal(err)
		}
		push("big/layer:1", img)
	}
	idx, err := random.Index(2048, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(host + "/multi/arch:1")
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatalf("pushing an index: %v", err)
	}
	s.Images["multi/arch:1"], _ = idx.Digest()
	// A referrer of apps/web:v0, pushed by digest (no tag).
	subj, err := remote.Get(mustRef(t, host+"/apps/web:v0"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ocitest.Artifact(subj.Descriptor, "application/vnd.example.sig", "application/octet-stream", []byte("signature of v0"))
	if err != nil {
		t.Fatal(err)
	}
	sd, _ := sig.Digest()
	if err := remote.Write(mustRef(t, host+"/apps/web@"+sd.String()), sig, opts...); err != nil {
		t.Fatalf("pushing a referrer: %v", err)
	}
	s.Images["apps/web@"+sd.String()] = sd
	if got, err := ocitest.ReferrerDigests(mustRef(t, host+"/apps/web:v0").Context(), s.Images["apps/web:v0"], opts...); err != nil || len(got) != 1 {
		t.Fatalf("referrers of v0 in the source: %v, %v", got, err)
	}

	now := time.Now()
	_, tok, err := st.CreateToken(server.TokenOptions{TTL: 24 * time.Hour, Uses: 3, Role: server.RolePush}, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := server.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if s.Client, err = st.Redeem(p, "laptop", now); err != nil {
		t.Fatal(err)
	}
	if _, s.Token, err = st.CreateToken(server.TokenOptions{TTL: 24 * time.Hour, Uses: 2, Role: server.RolePull}, now); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func remoteOpts(st *server.State, user, pw string) []remote.Option {
	return []remote.Option{
		remote.WithAuth(&authn.Basic{Username: user, Password: pw}),
		remote.WithTransport(transport(st)),
	}
}

// transport trusts st's CA only.
func transport(st *server.State) *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(st.CA.PEM)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
}

// treeHash is a digest of every file of dir (path, mode, mtime, content)
// and every directory (path, mode, mtime): what "the source is left
// intact" compares. The lines it hashed follow the digest, for a diff.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v %d", filepath.ToSlash(rel), fi.Mode(), fi.ModTime().UnixNano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	all := strings.Join(lines, "\n")
	sum := sha256.Sum256([]byte(all))
	return hex.EncodeToString(sum[:]) + "\n" + all
}

// sourceFiles are the image files migrate copies: every file under the
// data dir's registry/ except upload sessions, by driver path.
func sourceFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	root := filepath.Join(dir, "registry")
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = "/" + filepath.ToSlash(rel)
		if strings.Contains(rel, "/_uploads/") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
