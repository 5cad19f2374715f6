package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// edgecrd runs the command line in-process and returns its exit code and
// output.
func edgecrd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// device is a running server on a data dir, for the admin commands to work
// next to.
type device struct {
	dir  string
	addr string
	opts []remote.Option
}

func startDevice(t *testing.T) *device {
	t.Helper()
	dir := t.TempDir()
	name := "cmdtest"
	st, err := server.Ensure(dir, server.InitOptions{Name: &name, IPs: []net.IP{net.ParseIP("198.18.0.20")}}, time.Now())
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	pw, err := st.AdminPassword()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(st.CA.PEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	// Before the server shuts down: a dialled, unused connection would hold
	// its graceful shutdown for 5 s.
	t.Cleanup(tr.CloseIdleConnections)
	return &device{dir: dir, addr: srv.Addr().String(), opts: []remote.Option{
		remote.WithAuth(&authn.Basic{Username: server.AdminUser, Password: pw}),
		remote.WithTransport(tr),
	}}
}

func (d *device) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.addr + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomImage(t *testing.T, size int64, os, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// `edgecrd gc --delete-untagged` next to a running serve: a tagged
// two-platform index survives with its children, an untagged image goes,
// and info reports the run and the storage.
func TestGCCommandWhileServing(t *testing.T) {
	d := startDevice(t)
	amd, arm := randomImage(t, 40<<10, "linux", "amd64"), randomImage(t, 40<<10, "linux", "arm64")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	if err := remote.WriteIndex(d.ref(t, "cmd/app:multi"), idx, d.opts...); err != nil {
		t.Fatal(err)
	}
	untagged := randomImage(t, 30<<10, "linux", "amd64")
	if err := remote.Write(d.ref(t, "cmd/app:old"), untagged, d.opts...); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d.ref(t, "cmd/app:old"), randomImage(t, 10<<10, "linux", "amd64"), d.opts...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the grace below is 1 ms

	code, out, stderr := edgecrd(t, "gc", "--data-dir", d.dir, "--delete-untagged", "--grace", "1ms", "-o", "json")
	if code != 0 {
		t.Fatalf("gc: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "warning: --grace 1ms is short") {
		t.Errorf("no warning about the short grace: %q", stderr)
	}
	var rep server.GCReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("gc -o json: %v\n%s", err, out)
	}
	ud, _ := untagged.Digest()
	if rep.ManifestsDeleted != 1 || rep.DeletedManifests[0].Digest != ud.String() || rep.BlobsDeleted != 3 || rep.ReclaimedBytes == 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img, err := remote.Image(d.ref(t, "cmd/app:multi"), append(d.opts, remote.WithPlatform(p))...)
		if err != nil {
			t.Fatalf("pull %s: %v", p, err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("%s does not verify: %v", p, err)
		}
	}

	code, out, stderr = edgecrd(t, "info", "--data-dir", d.dir, "-o", "json")
	if code != 0 {
		t.Fatalf("info: %s", stderr)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	if info["lastGC"] == nil || info["lastGCReclaimedBytes"] != float64(rep.ReclaimedBytes) ||
		info["storageUsedBytes"] != float64(server.DirSize(filepath.Join(d.dir, "registry"))) || info["quotaBytes"] != float64(0) {
		t.Fatalf("info after gc: %s", out)
	}
	code, out, _ = edgecrd(t, "info", "--data-dir", d.dir)
	if code != 0 || !strings.Contains(out, "Last GC:") || !strings.Contains(out, "Storage:") {
		t.Fatalf("info table: %s", out)
	}

	// The table form, and a dry run that finds nothing more.
	code, out, stderr = edgecrd(t, "gc", "--data-dir", d.dir, "--dry-run", "--grace", "0s")
	if code != 0 || !strings.Contains(out, "Dry run: nothing was changed.") || !strings.Contains(out, "Would remove 0 B") {
		t.Fatalf("gc --dry-run: exit %d\n%s%s", code, out, stderr)
	}
}

func TestGCAndServeFlagErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"gc", "--grace", "-1h"}, "invalid --grace -1h0m0s: must not be negative"},
		{[]string{"gc", "--grace", "soon"}, `invalid argument "soon" for "--grace"`},
		{[]string{"gc", "-o", "yaml"}, "unknown output format"},
		{[]string{"serve", "--quota", "12XB"}, `--quota: invalid size "12XB": unknown unit "XB"`},
		{[]string{"serve", "--quota", "-5GB"}, `--quota: invalid size "-5GB"`},
		{[]string{"serve", "--gc-schedule", "nightly"}, `--gc-schedule: invalid GC schedule "nightly"`},
		{[]string{"serve", "--gc-schedule", "weekly@funday@03:00"}, `unknown day "funday"`},
		{[]string{"serve", "--gc-grace", "10s"}, "--gc-grace 10s: must be at least 2m0s"},
		{[]string{"serve", "--log-format", "xml"}, `unknown --log-format "xml"`},
		{[]string{"kube-secret"}, "--namespace is required"},
		{[]string{"kube-secret", "--namespace", "Prod"}, `invalid namespace "Prod"`},
		{[]string{"kube-secret", "--namespace", "prod", "--name", "a_b"}, `invalid secret name "a_b"`},
	} {
		code, _, stderr := edgecrd(t, append(c.args, "--data-dir", dir)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("edgecrd %s: exit %d, stderr %q; want %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a refused command created the data dir")
	}
}

func TestServeQuotaFlagPersists(t *testing.T) {
	for in, want := range map[string]int64{"40GiB": 40 << 30, "500MB": 500e6, "1.5GB": 1.5e9, "off": 0, "0": 0} {
		got, err := parseQuota(in)
		if err != nil || got != want {
			t.Errorf("parseQuota(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// serve checks its flags, then writes them to device.json; a cancel
	// stops it once it is up.
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data-dir", dir, "--listen", addr, "--name", "q", "--ip", "198.18.0.30",
			"--quota", "1.5GB", "--gc-schedule", "off", "--ui-listen", "off"}, streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Registry endpoint") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: exit %d: %s", code, errb.String())
	}
	code, o, _ := edgecrd(t, "info", "--data-dir", dir, "-o", "json")
	if code != 0 || !strings.Contains(o, `"quotaBytes": 1500000000`) {
		t.Fatalf("info after serve --quota 1.5GB: %s", o)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
