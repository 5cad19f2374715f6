package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// edgecrd backup next to a running serve, restore refuses a non-empty dir
// and restores onto a new one, which serves the same image to the same
// admin credential over the same CA.
func TestBackupRestoreCommands(t *testing.T) {
	d := startDevice(t)
	img := randomImage(t, 20<<10, "linux", "amd64")
	if err := remote.Write(d.ref(t, "cmd/app:1"), img, d.opts...); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if code, _, stderr := edgecrd(t, "token", "create", "--data-dir", d.dir); code != 0 {
		t.Fatal(stderr)
	}
	archive := filepath.Join(t.TempDir(), "box.tar.gz")
	code, out, stderr := edgecrd(t, "backup", "--data-dir", d.dir, "-o", archive)
	if code != 0 || !strings.Contains(out, "1 tags to "+archive) {
		t.Fatalf("backup: exit %d\n%s%s", code, out, stderr)
	}

	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "precious"), []byte("x"), 0o600)
	code, _, stderr = edgecrd(t, "restore", archive, "--data-dir", full)
	if code == 0 || !strings.Contains(stderr, "not empty") {
		t.Fatalf("restore onto a non-empty dir: exit %d, %s", code, stderr)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 1 {
		t.Fatalf("the non-empty dir changed: %v", ents)
	}

	newDir := filepath.Join(t.TempDir(), "new")
	code, out, stderr = edgecrd(t, "restore", archive, "--data-dir", newDir)
	if code != 0 {
		t.Fatalf("restore: %s", stderr)
	}
	old, err := server.Load(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, old.CA.Fingerprint()) {
		t.Fatalf("restore output lacks the CA fingerprint:\n%s", out)
	}
	_, oldInfo, _ := edgecrd(t, "info", "--data-dir", d.dir)
	_, newInfo, _ := edgecrd(t, "info", "--data-dir", newDir)
	if dropLine(oldInfo, "CA file:") != dropLine(newInfo, "CA file:") {
		t.Fatalf("info differs:\nold %s\nnew %s", oldInfo, newInfo)
	}
	_, oldTokens, _ := edgecrd(t, "token", "ls", "--data-dir", d.dir)
	_, newTokens, _ := edgecrd(t, "token", "ls", "--data-dir", newDir)
	if oldTokens != newTokens {
		t.Fatalf("tokens differ:\nold %s\nnew %s", oldTokens, newTokens)
	}

	st, err := server.Load(newDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, st, server.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(old.CA.PEM) // what joined clients trust
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	pw, _ := old.AdminPassword()
	ref, _ := name.ParseReference(srv.Addr().String() + "/cmd/app:1")
	got, err := remote.Image(ref, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: server.AdminUser, Password: pw}))
	if err != nil {
		t.Fatalf("pull from the restored device: %v", err)
	}
	if dg, _ := got.Digest(); dg != want {
		t.Fatalf("digest %v, want %v", dg, want)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
}

// dropLine removes the lines that start with prefix (after spaces).
func dropLine(s, prefix string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
