package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// serveState runs a server on an existing state until the test ends.
func serveState(t *testing.T, st *State) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		cancel()
		t.Fatalf("starting server: %v", err)
	}
	ts := &testServer{t: t, state: st, srv: srv, addr: srv.Addr().String(), logs: logs, cancel: cancel, done: make(chan error, 1)}
	ts.adminPW, _ = st.AdminPassword()
	ts.client = &http.Client{Transport: ts.transport()}
	go func() { ts.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		ts.client.CloseIdleConnections()
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

// The test: a device with clients and images is backed up while it
// serves and takes pushes, restored onto a fresh data dir (with a new IP),
// served, and the old clients' credentials pull every image, digest-
// verified. Between the passes a manifest is deleted (its tag must be left
// out, not dangle) and an image is pushed (it must not break anything).
func TestBackupWhileServingRestoreAndPullWithOldCredentials(t *testing.T) {
	ts := startServer(t, nil)
	var spare string // a token with a use left
	// Two clients join through the join API; the push token keeps a use
	// for after the restore.
	clients := map[string]JoinResponse{}
	for _, c := range []struct {
		name string
		role Role
	}{{"laptop", RolePush}, {"ci", RolePull}} {
		_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 2, Role: c.role}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, jr, e := ts.join(t, token, c.name)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("join %s: %d %+v", c.name, resp.StatusCode, e)
		}
		clients[c.name] = jr
		if c.name == "laptop" {
			spare = token
		}
	}
	pusher, puller := clients["laptop"], clients["ci"]
	want := map[string]v1.Hash{} // repo:tag → digest
	push := func(ref string) v1.Hash {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Error(err)
			return v1.Hash{}
		}
		if err := remote.Write(ts.ref(ref), img, ts.remoteOpts(pusher.Username, pusher.Password)...); err != nil {
			t.Errorf("push %s: %v", ref, err)
			return v1.Hash{}
		}
		d, _ := img.Digest()
		return d
	}
	for _, ref := range []string{"app:1", "app:2", "team/tool:latest", "doomed:1"} {
		want[ref] = push(ref)
	}
	delete(want, "doomed:1")

	// Pushes all through the backup.
	var stop atomic.Bool
	var pushed atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			push(fmt.Sprintf("busy:%d", i))
			pushed.Add(1)
		}
	}()
	for pushed.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	backupHook = func(stage string) {
		switch stage {
		case "tags":
			ref, _ := name.ParseReference(ts.addr + "/doomed@" + pushedDigest(t, ts, "doomed:1").String())
			if err := remote.Delete(ref, ts.admin()...); err != nil {
				t.Errorf("deleting doomed: %v", err)
			}
		case "links":
			push("late:1")
		}
	}
	t.Cleanup(func() { backupHook = nil })
	var archive bytes.Buffer
	rep, err := ts.state.Backup(context.Background(), &archive, true, time.Now())
	stop.Store(true)
	wg.Wait()
	backupHook = nil
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !slices.Equal(rep.Dropped, []string{"doomed:1"}) {
		t.Errorf("dropped %v, want [doomed:1]", rep.Dropped)
	}
	t.Logf("backup: %d files, %d bytes (%d compressed), %d tags", rep.Files, rep.Bytes, archive.Len(), rep.Tags)

	newDir := filepath.Join(t.TempDir(), "restored")
	st, err := Restore(context.Background(), &archive, newDir, RestoreOptions{IPs: []net.IP{net.ParseIP("198.18.0.77")}}, time.Now())
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if st.CA.Fingerprint() != ts.state.CA.Fingerprint() || st.Device.Host != ts.state.Device.Host || st.Device.HTTPSecret != ts.state.Device.HTTPSecret {
		t.Fatal("the restored device has another identity")
	}
	if !slices.Equal(st.Device.IPs, []string{"198.18.0.77"}) {
		t.Fatalf("IPs %v, want the new one", st.Device.IPs)
	}
	tks, err := st.Tokens()
	if err != nil || len(tks) != 2 {
		t.Fatalf("tokens after restore: %v, %v", tks, err)
	}
	rs := serveState(t, st)
	if resp, _, e := rs.join(t, spare, "after-restore"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the token's last use on the restored device: %d %+v", resp.StatusCode, e)
	}
	// The old clients trust the old CA and the server certificate names
	// the host and the new IP.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ts.state.CA.PEM)
	for _, sn := range []string{ts.state.Device.Host, "198.18.0.77"} {
		c, err := tls.Dial("tcp", rs.addr, &tls.Config{RootCAs: pool, ServerName: sn})
		if err != nil {
			t.Fatalf("TLS to the restored device as %s with the old CA: %v", sn, err)
		}
		c.Close()
	}
	if rs.adminPW != ts.adminPW {
		t.Fatal("admin password changed")
	}

	// Every tag the restored registry has pulls and verifies, with either
	// old client credential.
	tags := map[string]v1.Hash{}
	repos, err := remote.Catalog(context.Background(), mustRegistry(t, rs.addr), rs.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range repos {
		r, _ := name.NewRepository(rs.addr + "/" + repo)
		ts, err := remote.List(r, rs.admin()...)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range ts {
			ref := repo + ":" + tag
			for _, c := range []JoinResponse{puller, pusher} {
				user := c.Username
				img, err := remote.Image(rs.ref(ref), rs.remoteOpts(c.Username, c.Password)...)
				if err != nil {
					t.Fatalf("pull %s as %s: %v", ref, user, err)
				}
				if err := validate.Image(img); err != nil {
					t.Fatalf("pull %s as %s: %v", ref, user, err)
				}
				d, _ := img.Digest()
				tags[ref] = d
			}
		}
	}
	for ref, d := range want {
		if tags[ref] != d {
			t.Errorf("%s: restored digest %v, want %v", ref, tags[ref], d)
		}
	}
	for ref := range tags {
		if strings.HasPrefix(ref, "doomed:") || ref == "late:1" {
			t.Errorf("%s is in the restore: it was deleted, or pushed after the links were read", ref)
		}
	}
	t.Logf("restored and pulled %d tags (%d from the push loop that ran through the backup)", len(tags), len(tags)-len(want))
}

func pushedDigest(t *testing.T, ts *testServer, ref string) v1.Hash {
	t.Helper()
	desc, err := remote.Head(ts.ref(ref), ts.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest
}

func mustRegistry(t *testing.T, addr string) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Restore refuses a non-empty dir, and a damaged archive leaves nothing.
func TestRestoreRefusals(t *testing.T) {
	src := t.TempDir()
	st, err := Ensure(src, testOptions("box1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if _, err := st.Backup(context.Background(), &archive, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	good := archive.Bytes()

	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o600)
	if _, err := Restore(context.Background(), bytes.NewReader(good), full, RestoreOptions{}, time.Now()); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore onto a non-empty dir: %v", err)
	}
	if d := diffSnapshots(map[string]string{filepath.Join(full, "keep"): "x"}, snapshot(t, full)); len(d) != 0 {
		t.Fatalf("non-empty dir changed: %v", d)
	}

	// A byte of ca.key flipped: the index's hash catches it.
	i := bytes.Index(good, []byte("BEGIN EC PRIVATE KEY"))
	if i < 0 {
		i = bytes.Index(good, []byte("PRIVATE KEY"))
	}
	bad := slices.Clone(good)
	bad[i+40] ^= 1
	parent := t.TempDir()
	for what, b := range map[string][]byte{"flipped byte": bad, "cut short": good[:len(good)/2], "not a backup": []byte("hello")} {
		dst := filepath.Join(parent, "new")
		_, err := Restore(context.Background(), bytes.NewReader(b), dst, RestoreOptions{}, time.Now())
		if err == nil {
			t.Fatalf("%s: restore accepted it", what)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Fatalf("%s: %v left %v behind", what, err, ents)
		}
		t.Logf("%s: %v", what, err)
	}
}
