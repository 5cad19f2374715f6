package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// seedImagesOn writes what seedImages writes (repos repositories of tags
// tags, distribution's layout: manifest blob, revision link, tag links)
// through put, 16 at a time: the storage driver of a bucket.
func seedImagesOn(tb testing.TB, repos, tags int, put func(p string, data []byte) error) {
	tb.Helper()
	fake := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	type obj struct {
		p    string
		data []byte
	}
	work := make(chan obj)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := put(o.p, o.data); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("writing %s: %w", o.p, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for r := range repos {
		repo := fmt.Sprintf("fleet/repo%04d", r)
		for t := range tags {
			tag := fmt.Sprintf("t%02d", t)
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
				`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
				fake(repo+tag+"config"), 300+t, fake(repo+tag+"layer"), 1<<20+r)
			sum := sha256.Sum256([]byte(m))
			d := digest("sha256:" + hex.EncodeToString(sum[:]))
			work <- obj{blobDataPath(d), []byte(m)}
			work <- obj{path.Join(revisionLinkDir(repo, d), "link"), []byte(d)}
			work <- obj{tagCurrentLink(repo, tag), []byte(d)}
			work <- obj{path.Join(tagIndexEntryDir(repo, tag, d), "link"), []byte(d)}
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
}

// BenchmarkUIFleetOnBucket is the web UI of a replica on a bucket (MinIO
// on loopback) with 10,000 clients and 1,000 repositories of 10 tags
// (EDGECR_BENCH_REPOS, EDGECR_BENCH_TAGS): the Clients page's first view
// on a replica (its identity cache empty) without and with the identity
// snapshot, a later view, and the Images page's views once its index is
// built (the build, every manifest read from the bucket, is timed once
// and logged).
//
//	go test ./server -run '^$' -bench UIFleetOnBucket -benchtime 5x -v
func BenchmarkUIFleetOnBucket(b *testing.B) {
	repos, tags := envInt(b, "EDGECR_BENCH_REPOS", 1000), envInt(b, "EDGECR_BENCH_TAGS", 10)
	b.Logf("load average before: %s", loadAvg())
	seeded, err := benchBucket(b)
	if err != nil {
		b.Fatal(err)
	}
	seedIdentities(b, seeded, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	// The replica: a State of its own, as a serve process loads it.
	st, err := LoadS3(ctx, seeded.S3())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0", ReplicaIPs: ips("127.0.0.1"), ReplicaID: "replica-1"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.ln.Close() })
	start := time.Now()
	seedImagesOn(b, repos, tags, func(p string, data []byte) error { return srv.images.d.PutContent(ctx, p, data) })
	b.Logf("seeded %d repositories × %d tags in the bucket in %v; load average %s", repos, tags, time.Since(start).Round(time.Millisecond), loadAvg())

	u, err := newUI(srv)
	if err != nil {
		b.Fatal(err)
	}
	h := u.handler()
	_, cookie := u.sessions.create(AdminUser)
	get := func(tb testing.TB, page, want string) {
		req := httptest.NewRequest(http.MethodGet, page, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			tb.Fatalf("GET %s: %d", page, rec.Code)
		}
		if body := rec.Body.String(); !strings.Contains(body, want) {
			tb.Fatalf("GET %s does not show %q", page, want)
		}
	}
	const clientsWant = "10000 client(s)"
	// A replica's first view: nothing in its identity cache.
	firstView := func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			st.ids = nil
			b.StartTimer()
			get(b, "/clients", clientsWant)
		}
	}
	b.Run("clients/first-without-snapshot", firstView)
	if _, err := seeded.WriteIdentitySnapshot(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("clients/first", firstView)
	b.Run("clients/later", func(b *testing.B) {
		get(b, "/clients", clientsWant)
		for b.Loop() {
			get(b, "/clients", clientsWant)
		}
	})

	start = time.Now()
	get(b, "/images", `data-ref="fleet/repo0000:t00"`)
	b.Logf("Images page index built (every manifest read from the bucket) in %v; load average %s", time.Since(start).Round(time.Millisecond), loadAvg())
	last := fmt.Sprintf("fleet/repo%04d", repos-1)
	views := []struct{ name, page, want string }{
		{"images/first-page", "/images", `data-ref="fleet/repo0000:t00"`},
		{"images/later-page", fmt.Sprintf("/images?page=%d", (repos+imagesPerPage-1)/imagesPerPage), `data-ref="` + last + `:t00"`},
		{"images/search-repo", "/images?q=" + last, `data-ref="` + last + `:t00"`},
		{"images/search-repo-tag", "/images?q=repo00:t01", `data-ref="fleet/repo0001:t01"`},
	}
	for _, v := range views {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				get(b, v.page, v.want)
			}
		})
	}
	b.Run("images/after-push", func(b *testing.B) {
		for b.Loop() {
			srv.imgIndex.changedRepo("fleet/repo0000")
			get(b, "/images", `data-ref="fleet/repo0000:t00"`)
		}
	})
	b.Logf("load average after: %s", loadAvg())
}
