package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Spool files a crashed process left are removed when serve starts,
// however new they are (nothing of this process can be following them),
// with a log line saying how many and how many bytes; `edgecrd sync run`
// (RunSync's server), which may run beside a serve, leaves them.
func TestPullThroughSpoolClearedAtStart(t *testing.T) {
	up := newUpstream(t)
	cfg := parseConfig(t, up.yaml()+"pullThrough:\n  - prefix: cache\n    upstream: up\n")
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("test"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, spoolDir)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"blob-1", "blob-2"} {
		if err := os.WriteFile(filepath.Join(spool, n), make([]byte, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(runOnly bool) string {
		t.Helper()
		logs := &syncBuffer{}
		srv, err := New(context.Background(), st, Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil)), Sync: cfg, syncRunOnly: runOnly})
		if err != nil {
			t.Fatalf("starting the server: %v", err)
		}
		srv.ln.Close()
		return logs.String()
	}
	start(true)
	if ents, _ := os.ReadDir(spool); len(ents) != 2 {
		t.Fatalf("sync run's server: %d spool files left of 2; it must leave a running serve's alone", len(ents))
	}
	logs := start(false)
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Fatalf("%d spool files after start, want none", len(ents))
	}
	if !strings.Contains(logs, `"files":2`) || !strings.Contains(logs, `"bytes":2000`) {
		t.Errorf("no log line of the 2 files, 2000 bytes removed:\n%s", logs)
	}
}

// A bucket replica's spool is a directory of its own in TMPDIR, locked
// while the replica lives: at start, those whose lock nobody holds
// (replicas that died) are removed with their files; a live one's stays.
func TestPullThroughBucketSpoolClearedAtStart(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead, live := filepath.Join(tmp, spoolTempPrefix+"dead"), filepath.Join(tmp, spoolTempPrefix+"live")
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "blob-1"), make([]byte, 500), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	unlock, ok, err := tryLockFile(filepath.Join(live, spoolLock))
	if err != nil || !ok {
		t.Fatalf("locking the live spool: %v %v", ok, err)
	}
	defer unlock()
	logs := &syncBuffer{}
	dir, closeSpool, err := openSpool(&State{}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), spoolTempPrefix) {
		t.Errorf("bucket replica's spool %s, want a %s* directory in TMPDIR", dir, spoolTempPrefix)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead replica's spool: %v, want removed", err)
	}
	if _, err := os.Stat(filepath.Join(live, "blob-1")); err != nil {
		t.Errorf("a live replica's spool file: %v, want kept", err)
	}
	if !strings.Contains(logs.String(), `"files":1`) || !strings.Contains(logs.String(), `"bytes":500`) {
		t.Errorf("no log line of the file removed:\n%s", logs)
	}
	closeSpool()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("this replica's spool after close: %v, want removed", err)
	}
}

// A pull-through the storage quota has no room for (its blobs count
// twice while fetched: the spool and the copy in storage) is refused
// with 403 DENIED as a push over the quota is, before anything is
// fetched: nothing stays in the spool or in storage, and the upstream is
// not marked unreachable. One that fits gives its reservations back.
func TestPullThroughQuotaRefusal(t *testing.T) {
	up := newUpstream(t)
	big := up.pushImage(t, "library/big", "v1", 4<<20)
	small := up.pushImage(t, "library/small", "v1", 64<<10)
	cfg := parseConfig(t, up.yaml()+"pullThrough:\n  - prefix: cache\n    upstream: up\n")
	quota := int64(6 << 20)
	dev := startServerInit(t, func(o *InitOptions) { o.Quota = &quota }, func(o *Options) { o.Sync = cfg })

	_, err := remoteGet(dev, "cache/library/big:v1")
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("pull-through over the quota: %v, want 403 DENIED naming the quota", err)
	}
	t.Logf("refused: %v", err)
	if ents, _ := os.ReadDir(filepath.Join(dev.state.Dir, spoolDir)); len(ents) != 0 {
		t.Errorf("%d spool files after the refusal", len(ents))
	}
	if dev.srv.sync.has2(t, "cache/library/big", true, hashOf(t, big)) {
		t.Error("the refused image is stored")
	}

	// What fits is pulled, and leaves no reservation behind.
	if _, err := remoteGet(dev, "cache/library/small:v1"); err != nil {
		t.Fatalf("pull-through that fits: %v", err)
	}
	dev.pullVerified(t, "cache/library/small:v1", dev.admin()...)
	waitFor(t, "the image stored", func() bool { return dev.srv.sync.has2(t, "cache/library/small", true, hashOf(t, small)) })
	waitFor(t, "the quota's reservations given back", func() bool {
		dev.srv.usage.mu.Lock()
		defer dev.srv.usage.mu.Unlock()
		return dev.srv.usage.reserved == 0
	})
}

// Whatever the quota, the spool leaves 5 % of its disk free: a
// pull-through whose blobs do not fit is refused with 403 DENIED saying
// so.
func TestPullThroughSpoolDiskCap(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "library/big", "v1", 4<<20)
	cfg := parseConfig(t, up.yaml()+"pullThrough:\n  - prefix: cache\n    upstream: up\n")
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	dev.srv.sync.room.space = func(string) (int64, int64, error) { return 8 << 20, 100 << 20, nil } // 3 MiB above the 5 %
	_, err := remoteGet(dev, "cache/library/big:v1")
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "spool") {
		t.Fatalf("pull-through past the spool's disk: %v, want 403 DENIED naming the spool", err)
	}
	t.Logf("refused: %v", err)
}

func remoteGet(ts *testServer, ref string) (*remote.Descriptor, error) {
	return remote.Get(ts.ref(ref), ts.admin()...)
}

func (s *syncer) has2(t *testing.T, repo string, manifest bool, d v1.Hash) bool {
	t.Helper()
	has, err := s.has(context.Background(), repo, manifest, d)
	if err != nil {
		t.Fatal(err)
	}
	return has
}

// A blob whose fetch found no room when it started (pull-throughs begun
// together took it after the image's check passed) answers its client's
// GET with 403 DENIED saying so, not 404 BLOB_UNKNOWN; nothing is spooled.
func TestPullThroughBlobRefusedInBurst(t *testing.T) {
	f := newStreamFixture(t)
	f.up.pushImage(t, "library/big", "v1", 4<<20)
	var calls atomic.Int64
	f.dev.srv.sync.room.space = func(string) (int64, int64, error) {
		if calls.Add(1) == 1 {
			return 1 << 40, 2 << 40, nil // the image's check
		}
		return 1 << 20, 100 << 20, nil // then the blobs': others took the room
	}
	l := f.pullManifest(t, "cache/library/big")
	waitFor(t, "the pull-through ended", func() bool { return f.dev.srv.sync.m.PullsUnderWay() == 0 })
	resp := f.dev.do(http.MethodGet, "/v2/cache/library/big/blobs/"+l.Digest.String(), "admin", f.dev.adminPW, nil, nil)
	if code := errorCode(t, resp); resp.StatusCode != http.StatusForbidden || code != "DENIED" {
		t.Fatalf("GET of a blob refused for room: %d %s, want 403 DENIED", resp.StatusCode, code)
	}
	if n := len(f.spoolFiles(t)); n != 0 {
		t.Errorf("%d spool files after the refusal", n)
	}
}
