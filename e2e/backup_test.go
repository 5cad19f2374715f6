package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The backup test with the real binaries, each its own process: a
// client joins (sandboxed) and pushes; `edgecrd backup` runs while serve
// takes more pushes; the device is stopped, `edgecrd restore` puts it in a
// new data dir, serve starts there on the same address, and the client's
// own credential (helper, trust bundle and hosts entry from its join) pulls
// every tag, digest-verified.
func TestBackupRestoreKeepsJoinedClients(t *testing.T) {
	d := startDevice(t, "", "--ui-listen", "off")
	c := newClient(t)
	c.join(d)
	t.Setenv("DOCKER_CONFIG", c.dockerDir)
	t.Setenv("EDGECR_CONFIG_DIR", c.credDir)
	t.Setenv("PATH", filepath.Dir(bin.helper)+string(os.PathListSeparator)+os.Getenv("PATH"))
	want := map[string]v1.Hash{}
	for _, r := range []string{"app:1", "app:2", "tools/x:latest"} {
		want[r] = push(t, d.registryRef(t, r), dockerImage(t), c.remote())
	}

	var busy []name.Reference
	for i := range 50 {
		busy = append(busy, d.registryRef(t, fmt.Sprintf("busy:%d", i)))
	}
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for _, ref := range busy {
			select {
			case <-stop:
				return
			default:
			}
			img, err := random.Image(4096, 2)
			if err == nil && remote.Write(ref, img, c.remote()...) == nil {
				n++
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // pushes under way
	archive := filepath.Join(t.TempDir(), "box.tar.gz")
	out, e, err := edgecrd(t, "backup", "--data-dir", d.dataDir, "-o", archive)
	close(stop)
	pushed := <-done
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, e)
	}
	t.Logf("%s(%d pushes ran around it)", out, pushed)
	d.kill()

	newDir := filepath.Join(t.TempDir(), "restored")
	if out, e, err := edgecrd(t, "restore", archive, "--data-dir", newDir); err != nil {
		t.Fatalf("restore: %v\n%s%s", err, out, e)
	}
	// Same address: what the client's hosts entry and credential name.
	cmd := exec.Command(bin.edgecrd, "serve", "--data-dir", newDir, "--listen", d.addr, "--ui-listen", "off")
	var serveErr lockedBuffer
	cmd.Stderr = &serveErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(20 * time.Second); ; {
		if conn, err := tls.Dial("tcp", d.addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			conn.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("serve on the restored dir exited:\n%s", serveErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on the restored dir does not listen:\n%s", serveErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	reg, err := name.NewRegistry(d.info.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), reg, d.admin(c)...)
	if err != nil {
		t.Fatalf("catalog with the old admin password: %v", err)
	}
	got := map[string]v1.Hash{}
	for _, repo := range repos {
		r, _ := name.NewRepository(d.info.Endpoint + "/" + repo)
		tags, err := remote.List(r, c.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range tags {
			ref := r.Tag(tag)
			img, err := remote.Image(ref, c.remote()...)
			if err != nil {
				t.Fatalf("pull %s with the client's credential: %v", ref, err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("pull %s: %v", ref, err)
			}
			got[repo+":"+tag], _ = img.Digest()
		}
	}
	for r, dg := range want {
		if got[r] != dg {
			t.Errorf("%s: %v after restore, want %v", r, got[r], dg)
		}
	}
	if out, err := c.edgecr("status", "--root", c.root); err != nil || strings.Contains(out, "✗") {
		t.Errorf("edgecr status against the restored device: %v\n%s", err, out)
	}
	t.Logf("restored device serves %d tags to the joined client", len(got))
}
