package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// s3Site is a MinIO on loopback with a bucket, and the replicas that
// serve it: one data dir loaded once per replica (until the shared state
// itself moves into the bucket, issue 12), each with the bucket's
// location and its own kv.S3 on the bucket.
type s3Site struct {
	m        *kvtest.MinIO
	loc      *kv.S3Location
	store    *kv.S3
	replicas int // started so far, for their ids
}

func startS3Site(t *testing.T) *s3Site {
	t.Helper()
	return startS3SiteQuota(t, 0)
}

// startS3SiteQuota is startS3Site with a storage quota (0: none).
func startS3SiteQuota(t *testing.T, quota int64) *s3Site {
	t.Helper()
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	loc, err := kv.ParseS3URL("s3://" + bucket + "/site?endpoint=" + m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	init := testOptions("test")
	if quota > 0 {
		init.Quota = &quota
	}
	st, err := EnsureS3(ctx, loc, init, time.Now())
	if err != nil {
		t.Fatalf("initialising the device on the bucket: %v", err)
	}
	return &s3Site{m: m, loc: loc, store: st.KV().(*kv.S3)}
}

// state is a State of the site, as a replica loads it.
func (s *s3Site) state(t *testing.T) *State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := LoadS3(ctx, s.loc)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// replica starts a server on the site.
func (s *s3Site) replica(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	st := s.state(t)
	logs := &syncBuffer{}
	s.replicas++
	o := Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		ReplicaIPs: ips("127.0.0.1"), ReplicaID: fmt.Sprintf("replica-%d", s.replicas)}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, o)
	if err != nil {
		cancel()
		t.Fatalf("starting replica: %v", err)
	}
	pw, err := st.AdminPassword()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, state: st, srv: srv, addr: srv.Addr().String(), adminPW: pw, logs: logs, cancel: cancel, done: make(chan error, 1)}
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

// TestS3PushPullAcrossReplicas: an image pushed through one replica pulls,
// digest-verified, through the other; its blobs are objects in the
// bucket under the prefix, nothing on the local disk.
func TestS3PushPullAcrossReplicas(t *testing.T) {
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	r2 := site.replica(t, nil)

	img := ociImage(t, 256<<10, 3)
	r1.push(t, "team/app:v1", img)
	r2.pullVerified(t, "team/app:v1")

	// The tag list and the catalog through the other replica.
	tags, err := remote.List(r2.ref("team/app:v1").Context(), r2.admin()...)
	if err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("tags through replica 2 = %q, %v; want [v1]", tags, err)
	}
	// What the UI and `edgecr ls` show (State.Images), on another replica.
	repos, err := r2.state.Images(context.Background())
	if err != nil || len(repos) != 1 || repos[0].Name != "team/app" || len(repos[0].Tags) != 1 {
		t.Fatalf("images through replica 2's state = %+v, %v; want team/app with one tag", repos, err)
	}
	objs := site.m.Objects(t, site.loc.Bucket, "site/docker/registry/v2/blobs/")
	if len(objs) < 5 {
		t.Fatalf("blob objects in the bucket = %d, want at least 5 (3 layers, config, manifest): %q", len(objs), objs)
	}
	if used := DirSize(site.state(t).StorageDir()); used != 0 {
		t.Fatalf("local storage dir holds %d bytes, want none (images are in the bucket)", used)
	}
	// Usage is counted on the bucket.
	r2.srv.usage.walk()
	if got := r2.srv.usage.used(); got < 3*256<<10 {
		t.Fatalf("usage on the bucket = %d bytes, want at least the three layers", got)
	}
	// A delete through one replica is seen by the other.
	d, _ := img.Digest()
	r2.deleteManifest(t, "team/app", d.String())
	if _, err := remote.Get(r1.ref("team/app:v1"), r1.admin()...); err == nil {
		t.Fatal("the tag of a deleted manifest still resolves through replica 1")
	}
}

// TestS3StoreDown: with MinIO killed, registry requests fail with a 503
// that says the object store is unavailable, fast; /healthz says why;
// after MinIO is back everything pulls again, nothing lost.
func TestS3StoreDown(t *testing.T) {
	defer func(p time.Duration) { storeProbeEvery = p }(storeProbeEvery)
	storeProbeEvery = 200 * time.Millisecond
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	r2 := site.replica(t, nil)
	img := ociImage(t, 64<<10, 2)
	d := r1.push(t, "team/app:v1", img)

	site.m.Stop()
	// The first request finds the store down (connection refused, the
	// SDK's retries); the ones after it are answered at once.
	for i, ts := range []*testServer{r1, r2, r1} {
		start := time.Now()
		resp := ts.do("GET", "/v2/team/app/manifests/"+d.String(), "admin", ts.adminPW, nil,
			map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("request %d while MinIO is down: %d in %s: %s", i, resp.StatusCode, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "object store unavailable") {
			t.Fatalf("request %d while MinIO is down: status %d %s, want 503 naming the object store", i, resp.StatusCode, body)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After")
		}
		if took > storeOpTimeout {
			t.Fatalf("request %d took %s, more than the stated bound %s", i, took, storeOpTimeout)
		}
	}
	resp := r2.do("GET", "/healthz", "", "", nil, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "object store unavailable") {
		t.Fatalf("/healthz while MinIO is down: %d %s", resp.StatusCode, body)
	}
	t.Logf("/healthz while MinIO is down: %s", strings.TrimSpace(string(body)))
	for _, ts := range []*testServer{r1, r2} {
		if strings.Contains(ts.logs.String(), "panic") {
			t.Fatalf("a replica logged a panic:\n%s", ts.logs.String())
		}
	}

	site.m.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for _, ts := range []*testServer{r1, r2} {
		for {
			resp := ts.do("GET", "/healthz", "", "", nil, nil)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz still %d 30 s after MinIO came back", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	r2.pullVerified(t, "team/app:v1")
	r1.push(t, "team/app:v2", ociImage(t, 64<<10, 2))
	r2.pullVerified(t, "team/app:v2")
}

// shortGCTimings makes the lease and notice fast for a test.
func shortGCTimings(t *testing.T) {
	t.Helper()
	ttl, poll, stale, notice := gcLeaseTTL, gcLeasePoll, gcLeaseStale, gcNotice
	t.Cleanup(func() { gcLeaseTTL, gcLeasePoll, gcLeaseStale, gcNotice = ttl, poll, stale, notice })
	gcLeaseTTL, gcLeasePoll, gcLeaseStale, gcNotice = 3*time.Second, 100*time.Millisecond, 400*time.Millisecond, 600*time.Millisecond
}

// TestS3GCLease: one collector at a time across processes; a collector
// killed mid-run (its lease never renewed nor released, its markers left
// behind) blocks GC only until the lease expires, its markers do not
// block requests, and the next run completes and removes them.
func TestS3GCLease(t *testing.T) {
	shortGCTimings(t)
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	img := ociImage(t, 32<<10, 2)
	r1.push(t, "team/app:v1", img)
	ctx := context.Background()

	// A collector that was killed: lease taken, a marker on a layer.
	dead, err := acquireGCLease(ctx, site.store, "dead-host/1", "deadrun", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	if err := (&gcShared{store: site.store, lease: dead, run: "deadrun"}).doom(ctx, blobDataPath(digest(ld.String()))); err != nil {
		t.Fatal(err)
	}
	_, err = site.state(t).CollectGarbage(ctx, GCOptions{Grace: time.Hour})
	if !errors.Is(err, ErrGCLeaseHeld) || !strings.Contains(err.Error(), "dead-host/1") {
		t.Fatalf("gc while a lease is held: %v, want ErrGCLeaseHeld naming the holder", err)
	}
	t.Logf("gc while the dead collector's lease is live: %v", err)
	// While the dead lease is live a request on the marked blob waits for
	// the decision; once the lease expired, it goes through.
	time.Sleep(time.Until(dead.lease.Expires) + 200*time.Millisecond)
	start := time.Now()
	if got := r1.blobStatus(t, "team/app", ld); got != http.StatusOK {
		t.Fatalf("HEAD of the blob a dead collector marked: %d, want 200", got)
	}
	t.Logf("HEAD of a blob under a dead run's marker, lease expired: 200 in %s", time.Since(start).Round(time.Millisecond))

	// The next run takes the expired lease over and clears the marker.
	rep, err := site.state(t).CollectGarbage(ctx, GCOptions{Grace: time.Hour})
	if err != nil {
		t.Fatalf("gc after the dead lease expired: %v", err)
	}
	if keys, _ := site.store.List(ctx, gcDoomPrefix, "", 10); len(keys) != 0 {
		t.Fatalf("markers left after a run: %q", keys)
	}
	if _, _, err := site.store.Get(ctx, gcLeaseKey); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("lease after the run: %v, want released", err)
	}
	t.Logf("next run: %+v", rep.GCSummary)

	// Exclusivity: of two collections started together, one runs.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := site.state(t).CollectGarbage(ctx, GCOptions{Grace: time.Hour})
			errs <- err
		}()
	}
	e1, e2 := <-errs, <-errs
	held := 0
	for _, e := range []error{e1, e2} {
		switch {
		case errors.Is(e, ErrGCLeaseHeld):
			held++
		case e != nil:
			t.Fatalf("concurrent gc: %v", e)
		}
	}
	if held != 1 {
		t.Fatalf("two concurrent collections: errors %v and %v, want exactly one ErrGCLeaseHeld", e1, e2)
	}
	r1.pullVerified(t, "team/app:v1")
}

// TestS3GCWhilePushing: GC on one replica while two others push images
// that reuse blobs the previous round left unreferenced (the push's HEAD
// finds them and skips their upload), 10 rounds: every image pulls
// digest-verified, and the collections did remove garbage.
func TestS3GCWhilePushing(t *testing.T) {
	shortGCTimings(t)
	site := startS3Site(t)
	fast := func(o *Options) { o.TouchInterval = 200 * time.Millisecond }
	r1, r2, r3 := site.replica(t, fast), site.replica(t, fast), site.replica(t, fast)
	const grace = 2 * time.Second
	base := randomLayer(t, 64<<10, types.OCILayer)
	var prevU v1.Layer
	var deleted, restored int
	for i := range 10 {
		u := randomLayer(t, 48<<10, types.OCILayer)    // garbage after this round, reused by the next
		junk := randomLayer(t, 16<<10, types.OCILayer) // garbage after this round, never reused
		tmp := ociImage(t, 0, 0, u, junk)
		tmpD := r3.push(t, fmt.Sprintf("site/app:tmp%d", i), tmp)
		extra := []v1.Layer{base}
		if prevU != nil {
			extra = append(extra, prevU)
		}
		keep := ociImage(t, 32<<10, 1, extra...)

		gcDone := make(chan error, 1)
		go func() {
			rep, err := r2.srv.CollectGarbage(context.Background(), GCOptions{Grace: grace, DeleteUntagged: true, Trigger: "test"})
			if rep != nil {
				deleted += rep.BlobsDeleted
				restored += rep.Restored
			}
			gcDone <- err
		}()
		time.Sleep(time.Duration(i%4) * 250 * time.Millisecond) // meet the collector at different phases
		r1.push(t, fmt.Sprintf("site/app:keep%d", i), keep)
		r3.deleteManifest(t, "site/app", tmpD.String())
		if err := <-gcDone; err != nil {
			t.Fatalf("round %d: gc: %v", i, err)
		}
		r3.pullVerified(t, fmt.Sprintf("site/app:keep%d", i))
		prevU = u
		time.Sleep(grace + 200*time.Millisecond) // this round's garbage is old by the next
	}
	for i := range 10 {
		r2.pullVerified(t, fmt.Sprintf("site/app:keep%d", i))
	}
	t.Logf("10 rounds: %d blobs deleted by the collections, %d items put back", deleted, restored)
	if deleted == 0 {
		t.Fatal("the collections deleted nothing: the test did not exercise the sweep")
	}
}

// TestS3QuotaAcrossReplicas: pushes through two replicas at once cannot
// together take the bucket past the quota by more than the stated bound.
func TestS3QuotaAcrossReplicas(t *testing.T) {
	defer func(g int64) { quotaGrant = g }(quotaGrant)
	quotaGrant = 1 << 20
	const quota = 12 << 20
	site := startS3SiteQuota(t, quota)
	r1, r2 := site.replica(t, nil), site.replica(t, nil)
	var mu sync.Mutex
	refused, pushed := 0, 0
	var wg sync.WaitGroup
	for w, ts := range []*testServer{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				img := ociImage(t, 1<<20, 2) // 2 MiB and a bit
				err := remote.Write(ts.ref(fmt.Sprintf("q/app:w%d-%d", w, i)), img, ts.admin()...)
				mu.Lock()
				if err != nil {
					if !strings.Contains(err.Error(), "storage quota full") {
						t.Errorf("push %d/%d: %v, want a quota refusal or success", w, i, err)
					}
					refused++
				} else {
					pushed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	used := r1.srv.images.total(ctx)
	t.Logf("quota %d bytes; %d pushes succeeded, %d refused; bucket usage %d bytes (%+d over)", quota, pushed, refused, used, used-quota)
	if refused == 0 {
		t.Fatal("nothing refused: the pushes did not reach the quota")
	}
	const bound = 64 << 10 // metadata not granted ahead (quotashared.go)
	if used > quota+bound {
		t.Fatalf("bucket usage %d bytes passes the quota %d by more than %d", used, quota, bound)
	}
}

// TestS3StoreHangs: a store that accepts connections and never answers
// (MinIO's port taken by a silent listener) fails a request with the 503
// within the stated bound (storeOpTimeout, shortened here), not never.
func TestS3StoreHangs(t *testing.T) {
	defer func(op, probe time.Duration) { storeOpTimeout, storeProbeEvery = op, probe }(storeOpTimeout, storeProbeEvery)
	storeOpTimeout, storeProbeEvery = 2*time.Second, 200*time.Millisecond
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	d := r1.push(t, "team/app:v1", ociImage(t, 16<<10, 1))
	site.m.Stop()
	ln, err := net.Listen("tcp", strings.TrimPrefix(site.m.Endpoint, "http://"))
	if err != nil {
		t.Skipf("cannot take MinIO's port for a silent listener: %v", err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	for _, ref := range []string{"v1", d.String()} {
		start := time.Now()
		resp := r1.do("GET", "/v2/team/app/manifests/"+ref, "admin", r1.adminPW, nil,
			map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("GET manifest %s, store silent: %d in %s: %s", ref, resp.StatusCode, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d %s, want 503", resp.StatusCode, body)
		}
		if took > 2*storeOpTimeout+time.Second {
			t.Fatalf("took %s, more than the bound", took)
		}
	}
}

// TestS3GCLeaseRenewed: a collection that runs longer than the lease's TTL
// keeps it (renewed while running): another collector started after the
// first TTL has passed is still refused.
func TestS3GCLeaseRenewed(t *testing.T) {
	shortGCTimings(t)
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	d := r1.push(t, "team/app:v1", ociImage(t, 16<<10, 1))
	r1.deleteManifest(t, "team/app", d.String()) // something to remove
	ctx := context.Background()
	slow := GCOptions{Grace: 0, DeleteUntagged: true, beforeRemove: func(string) { time.Sleep(gcLeaseTTL / 2) }}
	done := make(chan error, 1)
	var rep *GCReport
	go func() {
		var err error
		rep, err = site.state(t).CollectGarbage(ctx, slow)
		done <- err
	}()
	time.Sleep(gcNotice + gcLeaseTTL + 500*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the slow collection ended before the test could check its lease: %v", err)
	default:
	}
	_, err := site.state(t).CollectGarbage(ctx, GCOptions{Grace: time.Hour})
	if !errors.Is(err, ErrGCLeaseHeld) {
		t.Fatalf("second collector past the first TTL: %v, want ErrGCLeaseHeld (the lease renewed)", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("slow collection: %v", err)
	}
	if rep.BlobsDeleted == 0 {
		t.Fatalf("slow collection deleted nothing: %+v", rep.GCSummary)
	}
	t.Logf("slow collection: %.1f s (lease TTL %s), %d blobs deleted", rep.DurationSeconds, gcLeaseTTL, rep.BlobsDeleted)
}

// TestS3GCKilled: an `edgecrd gc` process SIGKILLed in the middle of a
// collection (a marker written, the lease held) blocks nothing for longer
// than the lease: a request on the marked manifest is answered once the
// lease expired, a collection started meanwhile is refused naming the dead
// holder, the next one completes and removes the dead run's marker.
func TestS3GCKilled(t *testing.T) {
	if os.Getenv("EDGECR_GC_HELPER") == "1" {
		t.Skip("helper process")
	}
	shortGCTimings(t)
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	var untagged []v1.Hash
	for range 3 { // the first two end up untagged
		untagged = append(untagged, r1.push(t, "team/app:v1", ociImage(t, 16<<10, 1)))
	}
	untagged = untagged[:2]
	started := filepath.Join(t.TempDir(), "started")
	cmd := exec.Command(os.Args[0], "-test.run=^TestS3GCHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "EDGECR_GC_HELPER=1", "EDGECR_GC_HELPER_URL="+site.loc.String(), "EDGECR_GC_HELPER_STARTED="+started)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the collector process did not reach its second removal:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	killed := time.Now()
	ctx := context.Background()
	keys, _ := site.store.List(ctx, gcDoomPrefix, "", 10)
	b, _, err := site.store.Get(ctx, gcLeaseKey)
	if err != nil || len(keys) == 0 {
		t.Fatalf("after the kill: lease %s (%v), markers %q; want both left behind", b, err, keys)
	}
	t.Logf("killed mid-run: lease %s, markers %q", b, keys)

	_, err = site.state(t).CollectGarbage(ctx, GCOptions{Grace: 0, DeleteUntagged: true})
	if !errors.Is(err, ErrGCLeaseHeld) {
		t.Fatalf("gc right after the kill: %v, want ErrGCLeaseHeld", err)
	}
	// A request on the marked manifest waits for the dead lease at most.
	for _, d := range untagged {
		resp := r1.do("HEAD", "/v2/team/app/manifests/"+d.String(), "admin", r1.adminPW, nil,
			map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD of untagged manifest %s after the kill: %d, want 200 (nothing was removed yet)", d, resp.StatusCode)
		}
	}
	t.Logf("requests on the marked manifests answered %s after the kill (lease TTL %s)", time.Since(killed).Round(time.Millisecond), gcLeaseTTL)
	if waited := time.Since(killed); waited > gcLeaseTTL+2*time.Second {
		t.Fatalf("requests waited %s, more than the lease", waited)
	}
	time.Sleep(time.Until(killed.Add(gcLeaseTTL + 500*time.Millisecond)))
	rep, err := site.state(t).CollectGarbage(ctx, GCOptions{Grace: 0, DeleteUntagged: true})
	if err != nil {
		t.Fatalf("gc after the dead lease expired: %v", err)
	}
	if rep.ManifestsDeleted != 2 {
		t.Fatalf("next run deleted %d manifests, want the 2 untagged: %+v", rep.ManifestsDeleted, rep.GCSummary)
	}
	if keys, _ := site.store.List(ctx, gcDoomPrefix, "", 10); len(keys) != 0 {
		t.Fatalf("markers after the next run: %q", keys)
	}
	r1.pullVerified(t, "team/app:v1")
}

// TestS3GCHelper is the collector process TestS3GCKilled kills: it blocks
// at its second removal, after taking the first item out.
func TestS3GCHelper(t *testing.T) {
	if os.Getenv("EDGECR_GC_HELPER") != "1" {
		t.Skip("run by TestS3GCKilled")
	}
	gcLeaseTTL, gcNotice = 3*time.Second, 600*time.Millisecond
	loc, err := kv.ParseS3URL(os.Getenv("EDGECR_GC_HELPER_URL"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := kv.OpenS3(ctx, loc.KVConfig(), "test.internal") // testOptions("test")'s device id
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	o := GCOptions{Grace: 0, DeleteUntagged: true, beforeRemove: func(string) {
		n++
		if n == 2 {
			os.WriteFile(os.Getenv("EDGECR_GC_HELPER_STARTED"), nil, 0o600)
			select {} // until SIGKILL
		}
	}}
	_, err = CollectGarbageS3(ctx, loc, store, o)
	t.Fatalf("the collection ended: %v", err)
}
