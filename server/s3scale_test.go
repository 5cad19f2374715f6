package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/edgecr/edgecr/server/kv"
)

// s3CountingProxy is a reverse proxy on loopback in front of the site's
// MinIO that counts the requests through it: listings (ListObjectsV2)
// and the rest. loc is the site's bucket reached through it.
type s3CountingProxy struct {
	loc           *kv.S3Location
	lists, others atomic.Int64
}

func startS3CountingProxy(t *testing.T, site *s3Site) *s3CountingProxy {
	t.Helper()
	target, err := url.Parse(site.m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &s3CountingProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
			p.lists.Add(1)
		} else {
			p.others.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	loc := *site.loc
	loc.Endpoint = srv.URL // path-style requests: the bucket is in the path, the proxy's host is what is signed
	p.loc = &loc
	return p
}

// TestS3StorageTotalFlatListing: the storage used of a bucket (what
// `edgecrd info` shows and the quota's walk counts) is summed from one
// flat listing, a request per 1000 objects, whatever the directory tree:
// not a listing per directory and a stat per entry, which took more than
// five minutes on a bucket of 2,000 tags (issue 14).
func TestS3StorageTotalFlatListing(t *testing.T) {
	site := startS3Site(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seed, err := s3ImageStorage(ctx, site.loc, site.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 1,200 blobs in the layout's directories (one directory each, under
	// 256 prefixes) and a layer link for each in 12 repositories: 2,400
	// objects, three pages of a flat listing.
	const blobs = 1200
	var want atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make(chan error, blobs)
	for i := range blobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			data := fmt.Appendf(nil, "blob %d %s", i, make([]byte, i%97))
			sum := sha256.Sum256(data)
			d := digest("sha256:" + hex.EncodeToString(sum[:]))
			link := path.Join(layerLinkDir(fmt.Sprintf("team/app%02d", i%12), d), "link")
			for p, b := range map[string][]byte{blobDataPath(d): data, link: []byte(d)} {
				if err := seed.raw.PutContent(ctx, p, b); err != nil {
					errs <- fmt.Errorf("seeding %s: %w", p, err)
					return
				}
				want.Add(int64(len(b)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The images' sum through the walk distribution gets (durableFS's, a
	// listing per directory and a stat per entry); the state's objects
	// beside them have names that walk refuses ("invalid path").
	var before int64
	err = seed.d.Walk(ctx, "/docker", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			before += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if before != want.Load() {
		t.Fatalf("the per-directory walk of the images sums %d bytes, want the %d seeded", before, want.Load())
	}
	proxy := startS3CountingProxy(t, site)
	st, err := s3ImageStorage(ctx, proxy.loc, site.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if images := st.size(ctx, "/docker"); images != before {
		t.Fatalf("size of the images %d bytes, want %d", images, before)
	}
	proxy.lists.Store(0)
	proxy.others.Store(0)
	start := time.Now()
	got := st.total(ctx)
	took := time.Since(start)
	lists, others := proxy.lists.Load(), proxy.others.Load()
	t.Logf("total of a bucket of %d seeded objects (%d bytes) and the state: %d bytes, %d listings, %d other requests, %s",
		2*blobs, want.Load(), got, lists, others, took.Round(time.Millisecond))
	if got <= before {
		t.Fatalf("total %d bytes, want the images' %d and the state's", got, before)
	}
	// 2,400 objects and the state's: three or four pages, plus the stat
	// of the root (a HEAD and a one-key listing).
	if lists > 5 || others > 2 {
		t.Fatalf("total made %d listings and %d other requests for %d objects: want a flat listing (at most 5 and 2)", lists, others, 2*blobs)
	}
}

// TestS3ScanUploadsFlat: the upload sessions serve finds at start on a
// bucket come from one flat listing of repositories/ (a request per 1000
// objects), every session once with its newest write, nothing from the
// skipped _layers and _manifests.
func TestS3ScanUploadsFlat(t *testing.T) {
	site := startS3Site(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed, err := s3ImageStorage(ctx, site.loc, site.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sessions := map[string]bool{
		path.Join(uploadsDir("team/app"), "0b6c3a52-0d6c-4a52-9f7e-1a2b3c4d5e6f"):  true,
		path.Join(uploadsDir("team/app"), "1c7d4b63-1e7d-4b63-8a8f-2b3c4d5e6f70"):  true,
		path.Join(uploadsDir("other/x/y"), "2d8e5c74-2f8e-4c74-9b90-3c4d5e6f7081"): true,
	}
	var files []string
	for dir := range sessions {
		files = append(files, path.Join(dir, "startedat"), path.Join(dir, "hashstates", "sha256", "0"))
	}
	for i := range 40 {
		d := digest(fmt.Sprintf("sha256:%064x", i))
		for _, repo := range []string{"team/app", "other/x/y", "third"} {
			files = append(files, path.Join(layerLinkDir(repo, d), "link"), path.Join(revisionLinkDir(repo, d), "link"))
		}
	}
	for _, f := range files {
		if err := seed.raw.PutContent(ctx, f, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	proxy := startS3CountingProxy(t, site)
	st, err := s3ImageStorage(ctx, proxy.loc, site.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	st.scanUploads(ctx, func(dir string, last time.Time) {
		if _, dup := got[dir]; dup {
			t.Errorf("session %s found twice", dir)
		}
		got[dir] = last
	})
	for dir := range sessions {
		if got[dir].IsZero() {
			t.Errorf("session %s: not found or no write time (found %v)", dir, got)
		}
	}
	if len(got) != len(sessions) {
		t.Errorf("found %d sessions, want %d: %v", len(got), len(sessions), got)
	}
	if lists, others := proxy.lists.Load(), proxy.others.Load(); lists > 1 || others > 0 {
		t.Errorf("scanning %d objects made %d listings and %d other requests, want one listing", len(files), lists, others)
	}
}
