package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func (ts *testServer) post(t *testing.T, repo, user, pw string) *http.Response {
	t.Helper()
	resp := ts.do("POST", "/v2/"+repo+"/blobs/uploads/", user, pw, nil, nil)
	resp.Body.Close()
	return resp
}

// Issue 10 B: open upload sessions are bounded per identity and in total,
// with an OCI error that says which bound and what to do; finishing or
// cancelling a session gives its place back.
func TestUploadSessionsBounded(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.UploadsPerIdentity = 3; o.UploadsTotal = 5 })
	alice := ts.addIdentity("alice", RolePush)
	var locs []string
	for i := 0; i < 3; i++ {
		resp := ts.post(t, "bound/a", "alice", alice)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("alice's session %d: %d", i+1, resp.StatusCode)
		}
		locs = append(locs, resp.Header.Get("Location"))
	}
	resp := ts.do("POST", "/v2/bound/a/blobs/uploads/", "alice", alice, nil, nil)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"code":"TOOMANYREQUESTS"`) ||
		!strings.Contains(body, "alice has 3 open (limit 3)") || !strings.Contains(body, "expire after 15m0s") {
		t.Fatalf("alice's 4th session: %d %s, want 429 TOOMANYREQUESTS naming the bound", resp.StatusCode, body)
	}
	if got := len(ts.uploadDirs(t)); got != 3 {
		t.Errorf("%d sessions on disk after the refusal, want 3", got)
	}
	for i := 0; i < 2; i++ {
		if resp := ts.post(t, "bound/b", "admin", ts.adminPW); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("admin's session %d: %d", i+1, resp.StatusCode)
		}
	}
	resp = ts.do("POST", "/v2/bound/b/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	if body := readAll(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "the registry has 5 open (limit 5)") {
		t.Fatalf("6th session in all: %d %s, want 429 naming the total", resp.StatusCode, body)
	}

	// A cancelled session and a committed one give their places back.
	if resp := ts.do("DELETE", uploadPath(locs[0]), "alice", alice, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	b := []byte("committed")
	sum := sha256.Sum256(b)
	resp = ts.do("PUT", uploadPath(locs[1])+"&digest=sha256:"+hex.EncodeToString(sum[:]), "alice", alice, b, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	for i := 0; i < 2; i++ {
		resp := ts.do("POST", "/v2/bound/a/blobs/uploads/", "alice", alice, nil, nil)
		if body := readAll(t, resp); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("alice's session after two ended, %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return buf.String()
}

// fakeClock is a settable clock for the server.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Issue 10 B: a session idle for longer than the idle time goes with its
// data, and the usage counter gives back what it held; a session in use
// stays. Sessions a previous run left are found at start.
func TestIdleUploadSessionsExpire(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ts := startServer(t, func(o *Options) { o.Now = clock.now })
	idle := ts.patch(t, ts.startUpload(t, "idle/a"), bytes.Repeat([]byte("i"), 100<<10))
	busy := ts.patch(t, ts.startUpload(t, "idle/a"), bytes.Repeat([]byte("b"), 10<<10))
	withSessions := ts.checkUsage(t, "with two sessions")

	clock.add(DefaultUploadIdle - time.Minute)
	busy = ts.patch(t, busy, []byte("more"))
	clock.add(2 * time.Minute)
	ts.srv.expireUploads()
	if n := len(ts.uploadDirs(t)); n != 1 {
		t.Fatalf("%d sessions after expiry, want the one in use", n)
	}
	after := ts.checkUsage(t, "after expiry")
	if after >= withSessions-100<<10 {
		t.Errorf("usage %d after expiry, was %d with the idle session's 100 KiB", after, withSessions)
	}
	resp := ts.do("PATCH", uploadPath(idle), "admin", ts.adminPW, []byte("late"), nil)
	if code := errorCode(t, resp); resp.StatusCode != http.StatusNotFound || code != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("PATCH of an expired session: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", resp.StatusCode, code)
	}
	ts.patch(t, busy, []byte("still works"))

	// What a restart finds: the session left on disk, with its age.
	found := map[string]time.Time{}
	scanUploads(ts.state.StorageDir(), func(dir string, last time.Time) { found[dir] = last })
	if len(found) != 1 {
		t.Fatalf("scan found %v, want the one session", found)
	}
	for dir := range found {
		if !strings.HasPrefix(dir, "/docker/registry/v2/repositories/idle/a/_uploads/") {
			t.Errorf("scan found %s", dir)
		}
	}
}

// Issue 10 B: the quota counts what an upload session takes on disk, not
// only its files' sizes: an empty session is several inodes.
func TestEmptyUploadSessionsCountTheirDiskUse(t *testing.T) {
	ts := startServer(t, nil)
	before := ts.srv.StorageUsed()
	const n = 20
	for i := 0; i < n; i++ {
		ts.startUpload(t, "empty/a")
	}
	var files, disk int64
	for _, d := range ts.uploadDirs(t) {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if fi, err := os.Lstat(p); err == nil {
				disk += allocated(fi)
				if fi.Mode().IsRegular() {
					files += fi.Size()
				}
			}
			return nil
		})
	}
	got := ts.srv.StorageUsed() - before
	t.Logf("%d empty sessions: counted %d bytes; their files hold %d bytes, their disk use is %d bytes", n, got, files, disk)
	if got < disk || got < n*diskBlock {
		t.Errorf("%d empty sessions counted %d bytes; they take %d bytes of disk", n, got, disk)
	}
	ts.checkUsage(t, "with the sessions")
}

// The tracker: one holder per session; a session being expired is held
// until its files are gone; places come back when sessions end.
func TestUploadSessionTracker(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newUploadSessions(2, 3, time.Minute, clock.now)
	for i, dir := range []string{"/a", "/b"} {
		if err := s.admit("alice"); err != nil {
			t.Fatalf("admit %d: %v", i, err)
		}
		s.opened("alice", dir)
	}
	if err := s.admit("alice"); err == nil {
		t.Fatal("alice's 3rd session admitted past her limit of 2")
	}
	release, ok := s.acquire("/a")
	if !ok {
		t.Fatal("acquire /a")
	}
	if _, ok := s.acquire("/a"); ok {
		t.Fatal("/a acquired twice")
	}
	release(true)
	clock.add(2 * time.Minute)
	exp := s.expired()
	if len(exp) != 2 {
		t.Fatalf("%d sessions expired, want 2", len(exp))
	}
	if _, ok := s.acquire("/a"); ok {
		t.Fatal("/a acquired while it is being removed")
	}
	for _, e := range exp {
		s.removed(e)
	}
	if total, owned := s.count("alice"); total != 0 || owned != 0 {
		t.Fatalf("after removal: %d open, %d alice's", total, owned)
	}
	if err := s.admit("alice"); err != nil {
		t.Fatalf("admit after removal: %v", err)
	}
	s.abandon("alice")
	// An id nobody opened is held for its request and then forgotten.
	release, ok = s.acquire("/unknown")
	if !ok {
		t.Fatal("acquire of an unknown id")
	}
	release(false)
	if total, _ := s.count(""); total != 0 {
		t.Fatalf("an unknown id stayed tracked: %d open", total)
	}
}

// failingBody is a request body that gives n bytes and then fails, as a
// client that gives up an upload midway (go-containerregistry cancels the
// other layers' uploads of a push one of whose layers was refused).
type failingBody struct{ n int }

func (c *failingBody) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, errors.New("the client gave up")
	}
	k := min(len(p), c.n)
	for i := range p[:k] {
		p[i] = 'c'
	}
	c.n -= k
	return k, nil
}

// Found by the soak (issue 14): a session whose PATCH lost its body
// midway cannot be continued (distribution kept no hash state for what it
// wrote: 416 at the offset it reports) and used to hold its identity's
// place for DefaultUploadIdle; after about 12 pushes refused at the quota,
// each giving up 4 parallel uploads, every push got TOOMANYREQUESTS. Such
// a session now goes with its data at once, and the counter follows.
func TestCutUploadSessionGoesAtOnce(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.UploadsPerIdentity = 3 })
	whole := ts.patch(t, ts.startUpload(t, "cut/a"), bytes.Repeat([]byte("w"), 10<<10))
	before := ts.checkUsage(t, "with one session")
	for i := range 5 { // more than the limit of 3: each place comes back
		loc := ts.startUpload(t, "cut/a")
		req, err := http.NewRequest("PATCH", ts.url(uploadPath(loc)), &failingBody{n: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("admin", ts.adminPW)
		req.Header.Set("Content-Type", "application/octet-stream")
		if resp, err := ts.client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("cut %d: a PATCH whose body failed midway got an answer: %s", i, resp.Status)
		}
		// The server sees the cut once the stream or connection is gone.
		deadline := time.Now().Add(10 * time.Second)
		for len(ts.uploadDirs(t)) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("cut %d: %d sessions 10 s after the body failed, want the whole one", i, len(ts.uploadDirs(t)))
			}
			time.Sleep(20 * time.Millisecond)
		}
		resp := ts.do("GET", uploadPath(loc), "admin", ts.adminPW, nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("cut %d: the session's status: %s, want 404", i, resp.Status)
		}
	}
	// The quota's counter may lag the removal by the request's end.
	deadline := time.Now().Add(10 * time.Second)
	for ts.srv.StorageUsed() != before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := ts.checkUsage(t, "after the cut sessions"); after != before {
		t.Errorf("usage %d after the cut sessions went, %d before", after, before)
	}
	ts.patch(t, whole, []byte("still works"))
}
