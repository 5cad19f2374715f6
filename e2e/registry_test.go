package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func (d *device) remote() []remote.Option {
	return []remote.Option{
		remote.WithAuth(&authn.Basic{Username: d.info.Username, Password: d.info.Password}),
		remote.WithTransport(d.transport()),
	}
}

func (d *device) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.addr + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pullVerified pulls ref and checks every blob against its digest.
func (d *device) pullVerified(t *testing.T, ref string, want v1.Hash) {
	t.Helper()
	img, err := remote.Image(d.ref(t, ref), d.remote()...)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	got, err := img.Digest()
	if err != nil || got != want {
		t.Fatalf("pulling %s: digest %v (%v), want %v", ref, got, err, want)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pulling %s: content does not match its digests: %v", ref, err)
	}
}

// slowBody yields n pseudo-random bytes; after limit bytes it signals on
// reached and blocks until the request is torn down.
type slowBody struct {
	rng     *rand.ChaCha8
	left    int64
	sent    atomic.Int64
	limit   int64
	reached chan struct{}
	stop    chan struct{}
	once    bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.sent.Load() >= b.limit {
		if !b.once {
			b.once = true
			close(b.reached)
		}
		<-b.stop
		return 0, io.ErrUnexpectedEOF
	}
	n := min(int64(len(p)), b.left, 1<<20)
	b.rng.Read(p[:n])
	b.left -= n
	b.sent.Add(n)
	return int(n), nil
}

func TestSIGKILLDuringUploadKeepsEarlierImages(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	d := startDevice(t, dataDir)

	want := map[string]v1.Hash{}
	for i, repo := range []string{"apps/web:1", "apps/web:2", "base/os:latest"} {
		img, err := random.Image(int64(256<<10*(i+1)), 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(d.ref(t, repo), img, d.remote()...); err != nil {
			t.Fatalf("pushing %s: %v", repo, err)
		}
		want[repo], _ = img.Digest()
	}

	// Start a 100 MiB upload and kill the device half way through it.
	const size = 100 << 20
	h := sha256.New()
	io.Copy(h, io.LimitReader(rand.NewChaCha8([32]byte{7}), size))
	bigDigest := "sha256:" + hex.EncodeToString(h.Sum(nil))

	client := &http.Client{Transport: d.transport()}
	req, _ := http.NewRequest("POST", "https://"+d.addr+"/v2/big/upload/blobs/uploads/", nil)
	req.SetBasicAuth(d.info.Username, d.info.Password)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("starting upload: %v %v", err, resp)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	body := &slowBody{rng: rand.NewChaCha8([32]byte{7}), left: size, limit: 50 << 20, reached: make(chan struct{}), stop: make(chan struct{})}
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(body.stop) }) }
	defer stop()
	put, _ := http.NewRequest("PUT", loc+"&digest="+bigDigest, body)
	put.SetBasicAuth(d.info.Username, d.info.Password)
	put.ContentLength = size
	putErr := make(chan error, 1)
	go func() {
		resp, err := client.Do(put)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("upload finished with %s", resp.Status)
		}
		putErr <- err
	}()
	select {
	case <-body.reached:
	case err := <-putErr:
		t.Fatalf("upload ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("upload did not reach 50 MiB")
	}
	// Give the server a moment to write what it received.
	time.Sleep(200 * time.Millisecond)
	d.signal(syscall.SIGKILL)
	<-d.exited
	stop()
	select {
	case err := <-putErr:
		if err == nil {
			t.Fatal("upload succeeded although the device was killed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("client upload did not end after the device was killed")
	}
	partial := uploadBytesOnDisk(t, dataDir)
	t.Logf("killed with %d MiB of the upload on disk", partial>>20)

	d2 := startDevice(t, dataDir)
	for repo, dg := range want {
		d2.pullVerified(t, repo, dg)
	}
	resp, err = d2.get(context.Background(), "/v2/big/upload/blobs/"+bigDigest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("partial upload visible as a blob: status %d", resp.StatusCode)
	}
	resp, err = d2.get(context.Background(), "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	var cat struct{ Repositories []string }
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	json.Unmarshal(raw, &cat)
	if strings.Join(cat.Repositories, ",") != "apps/web,base/os" {
		t.Fatalf("catalog after restart = %v (%s %s), want [apps/web base/os]", cat.Repositories, resp.Status, raw)
	}
}

// uploadBytesOnDisk sums the in-progress upload data in the store.
func uploadBytesOnDisk(t *testing.T, dataDir string) int64 {
	var n int64
	filepath.Walk(filepath.Join(dataDir, "registry"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.Contains(p, "_uploads") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestSIGTERMShutsDownGracefully(t *testing.T) {
	d := startDevice(t, "")
	d.signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(35 * time.Second):
		t.Fatal("edgecrd did not exit after SIGTERM")
	}
	if !d.cmd.ProcessState.Success() {
		t.Fatalf("edgecrd exit after SIGTERM: %v\n%s", d.cmd.ProcessState, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), "shutting down") {
		t.Fatalf("no shutdown log line:\n%s", d.stderr)
	}
}

func TestInfoContractAndAdminCommandsWhileServing(t *testing.T) {
	d := startDevice(t, "")
	ca, err := os.ReadFile(d.info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block := pemDER(t, ca)
	sum := sha256.Sum256(block)
	if d.info.CAFingerprint != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("caFingerprint %s is not sha256 of the CA DER", d.info.CAFingerprint)
	}
	if d.info.Endpoint != "ecr.e2e.internal:"+strings.Split(d.addr, ":")[1] || d.info.IPAddress != "198.18.0.1" || d.info.Username != "admin" || len(d.info.Password) < 40 {
		t.Fatalf("info = %+v", d.info)
	}
	out, _, err := edgecrd(t, "info", "--data-dir", d.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"Endpoint", "IPAddress", "Username", "Password", d.info.CAFingerprint} {
		if !strings.Contains(out, col) {
			t.Errorf("info table lacks %q:\n%s", col, out)
		}
	}
	// init while serving: idempotent, changes nothing the server relies on.
	before, _ := os.ReadFile(filepath.Join(d.dataDir, "server.crt"))
	if _, e, err := edgecrd(t, "init", "--data-dir", d.dataDir); err != nil {
		t.Fatalf("init while serving: %v\n%s", err, e)
	}
	after, _ := os.ReadFile(filepath.Join(d.dataDir, "server.crt"))
	if !bytes.Equal(before, after) {
		t.Fatal("init while serving replaced the server certificate")
	}
	// The server prints where it is and how to get credentials.
	for _, want := range []string{"ecr.e2e.internal", d.info.CAFingerprint, "edgecrd info"} {
		if !strings.Contains(d.stdout.String(), want) {
			t.Errorf("serve output lacks %q:\n%s", want, d.stdout)
		}
	}
	if strings.Contains(d.stdout.String()+d.stderr.String(), d.info.Password) {
		t.Fatal("serve printed the admin password")
	}
}

func TestServeRefusesCorruptState(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if _, e, err := edgecrd(t, "init", "--data-dir", dataDir, "--name", "x"); err != nil {
		t.Fatalf("init: %v\n%s", err, e)
	}
	p := filepath.Join(dataDir, "identities.json")
	if err := os.WriteFile(p, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, e, err := edgecrd(t, "serve", "--data-dir", dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--ui-listen", "off")
	if err == nil {
		t.Fatal("serve started on corrupt state")
	}
	if !strings.Contains(e, "identities.json: corrupt") {
		t.Fatalf("error does not name the file: %s", e)
	}
	if b, _ := os.ReadFile(p); string(b) != "{garbage" {
		t.Fatal("corrupt file was overwritten")
	}
}

func pemDER(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("CA file is not PEM")
	}
	return blk.Bytes
}
