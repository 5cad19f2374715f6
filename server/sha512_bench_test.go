package server

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
)

// BenchmarkBlobPushSha512: a monolithic push (POST, then PUT with the
// digest) of the same 512 MiB blob addressed by sha256 and by sha512,
// through the storage guard and distribution on edgecrfs (benchGuard), a
// fresh store per algorithm. The client's digest is computed outside the
// timer; what is timed is the server's part: writing the upload, verifying
// it against the digest and (for sha512) linking it to the sha256 it is
// stored under. MB/s is the result. Run it once:
//
//	go test ./server -run '^$' -bench BenchmarkBlobPushSha512 -benchtime 1x
func BenchmarkBlobPushSha512(b *testing.B) {
	const size = 512 << 20
	blob := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{'e', 'd', 'g', 'e', 'c', 'r'})
	rng.Read(blob)
	for _, alg := range []string{"sha256", "sha512"} {
		b.Run("alg="+alg, func(b *testing.B) {
			d, err := digestOf(blob, alg)
			if err != nil {
				b.Fatal(err)
			}
			g, _ := benchGuard(b)
			g.sessions = newUploadSessions(64, 64, time.Hour, time.Now)
			b.SetBytes(size)
			for i := 0; b.Loop(); i++ {
				repo := "bench/" + alg + "-" + string(rune('a'+i%26))
				loc := blobUploadStart(b, g, repo)
				rec := serveRoute(g, v2.RouteNameBlobUploadChunk, "PUT", loc+"&digest="+d.String(), blob)
				if rec.Code != http.StatusCreated {
					b.Fatalf("PUT %s blob: %d %s", alg, rec.Code, rec.Body)
				}
				if got := rec.Header().Get("Docker-Content-Digest"); got != d.String() {
					b.Fatalf("PUT %s blob: Docker-Content-Digest %s, want %s", alg, got, d)
				}
			}
		})
	}
}

// blobUploadStart POSTs a new upload to repo and returns its location
// (path and query).
func blobUploadStart(b *testing.B, g http.Handler, repo string) string {
	b.Helper()
	rec := serveRoute(g, v2.RouteNameBlobUpload, "POST", "/v2/"+repo+"/blobs/uploads/", nil)
	if rec.Code != http.StatusAccepted {
		b.Fatalf("POST upload to %s: %d %s", repo, rec.Code, rec.Body)
	}
	loc := strings.TrimPrefix(rec.Header().Get("Location"), "http://example.com")
	if !strings.Contains(loc, "?") {
		loc += "?"
	}
	return loc
}

// serveRoute serves one request on h as the route it is.
func serveRoute(h http.Handler, route, method, p string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, p, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req = req.WithContext(withRouteInfo(req.Context(), &routeInfo{route: route}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
