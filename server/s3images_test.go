package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// s3Site is a MinIO on loopback with a bucket, and the replicas that
// serve it: one data dir loaded once per replica (until the shared state
// itself moves into the bucket, issue 12), each with the bucket's
// location and its own kv.S3 on the bucket.
type s3Site struct {
	m     *kvtest.MinIO
	loc   *kv.S3Location
	store *kv.S3
	dir   string
}

func startS3Site(t *testing.T) *s3Site {
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
	store, err := kv.OpenS3(ctx, loc.KVConfig(), "test-device")
	if err != nil {
		t.Fatalf("opening the state store: %v", err)
	}
	dir := t.TempDir()
	if _, err := Ensure(dir, testOptions("test"), time.Now()); err != nil {
		t.Fatalf("initialising data dir: %v", err)
	}
	return &s3Site{m: m, loc: loc, store: store, dir: dir}
}

// state is a State of the site, as a replica loads it.
func (s *s3Site) state(t *testing.T) *State {
	t.Helper()
	st, err := Load(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	st.kv, st.loc = s.store, s.loc
	return st
}

// replica starts a server on the site.
func (s *s3Site) replica(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	st := s.state(t)
	logs := &syncBuffer{}
	o := Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))}
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
