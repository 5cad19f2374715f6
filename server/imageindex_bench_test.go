package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seedImages writes repos repositories of tags tags each into st's
// registry storage the way distribution lays them out (a manifest blob, its
// revision link, the tag's current and index links), without a server: a
// push of 10,000 images takes minutes, this takes seconds. Each tag is its
// own OCI image manifest whose config and layer are named, not stored (the
// Images page reads manifests only). Repositories are fleet/repoNNNN, tags
// tNN.
func seedImages(tb testing.TB, st *State, repos, tags int) {
	tb.Helper()
	root := st.StorageDir()
	write := func(p string, data []byte) {
		full := osPath(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	fake := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
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
			write(blobDataPath(d), []byte(m))
			write(path.Join(revisionLinkDir(repo, d), "link"), []byte(d))
			write(tagCurrentLink(repo, tag), []byte(d))
			write(path.Join(tagIndexEntryDir(repo, tag, d), "link"), []byte(d))
		}
	}
}

// BenchmarkUIImagesPageFleet is the Images page of a registry with 1,000
// repositories of 10 tags (EDGECR_BENCH_REPOS and EDGECR_BENCH_TAGS change
// it): the index's first build, then views of the first page, a later
// page, a search by repository, one by REPO:TAG, and a view after a push
// to one repository (which lists that repository again).
func BenchmarkUIImagesPageFleet(b *testing.B) {
	repos, tags := envInt(b, "EDGECR_BENCH_REPOS", 1000), envInt(b, "EDGECR_BENCH_TAGS", 10)
	st, err := Ensure(b.TempDir(), testOptions("bench"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	seedImages(b, st, repos, tags)
	b.Logf("seeded %d repositories × %d tags in %v; load average %s", repos, tags, time.Since(start).Round(time.Millisecond), loadAvg())
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.ln.Close() })
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
		if !strings.Contains(rec.Body.String(), want) {
			tb.Fatalf("GET %s does not show %q", page, want)
		}
	}
	b.Run("first-build", func(b *testing.B) {
		for b.Loop() {
			srv.imgIndex = newImageIndex(ctx, st.imageStorage, 0, time.Now, nil)
			get(b, "/images", `data-ref="fleet/repo0000:t00"`)
		}
	})
	// A rebuild (the bound passed, or a garbage collection): manifests
	// already read are not read again.
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			srv.imgIndex.mu.Lock()
			done := srv.imgIndex.startBuildLocked()
			srv.imgIndex.mu.Unlock()
			<-done
		}
	})
	last := fmt.Sprintf("fleet/repo%04d", repos-1)
	views := []struct{ name, page, want string }{
		{"first-page", "/images", `data-ref="fleet/repo0000:t00"`},
		{"later-page", fmt.Sprintf("/images?page=%d", (repos+imagesPerPage-1)/imagesPerPage), `data-ref="` + last + `:t00"`},
		{"search-repo", "/images?q=" + last, `data-ref="` + last + `:t00"`},
		{"search-repo-tag", "/images?q=repo00:t01", `data-ref="fleet/repo0001:t01"`},
	}
	for _, v := range views {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				get(b, v.page, v.want)
			}
		})
	}
	b.Run("after-push", func(b *testing.B) {
		for b.Loop() {
			srv.imgIndex.changedRepo("fleet/repo0000")
			get(b, "/images", `data-ref="fleet/repo0000:t00"`)
		}
	})
	b.Logf("load average after: %s", loadAvg())
}

// envInt is the positive number in the environment variable name, def
// when it is unset.
func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}
