package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestBlobServedFromFile: a blob GET and HEAD on local disk answer as
// distribution's blob server does (status, digest, length, type, ETag,
// ranges, If-None-Match), and a blob the repository does not link stays
// unknown there.
func TestBlobServedFromFile(t *testing.T) {
	ts := startServer(t, nil)
	checkBlobServing(t, ts, pushBlobImages(t, ts))
}

// TestS3BlobServedFromBucket: the same on a bucket (serveBlobStored, the
// driver's Reader at the range's offset), through the replica that took
// the push and through another.
func TestS3BlobServedFromBucket(t *testing.T) {
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	img := pushBlobImages(t, r1)
	checkBlobServing(t, r1, img)
	checkBlobServing(t, site.replica(t, nil), img)
}

// pushBlobImages pushes app:v1 (one 64 KiB layer, returned) and other:v1
// (another layer) through ts.
func pushBlobImages(t *testing.T, ts *testServer) v1.Image {
	t.Helper()
	img := ociImage(t, 64<<10, 1)
	ts.push(t, "app:v1", img)
	ts.push(t, "other:v1", ociImage(t, 1024, 1))
	return img
}

// checkBlobServing checks how ts serves img's layer in app, and that other
// does not link it.
func checkBlobServing(t *testing.T, ts *testServer, img v1.Image) {
	t.Helper()
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	size, _ := ls[0].Size()
	get := func(method, repo string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		resp := ts.do(method, "/v2/"+repo+"/blobs/"+d.String(), "admin", ts.adminPW, nil, hdr)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, full := get(http.MethodGet, "app", nil)
	sum := sha256.Sum256(full)
	if resp.StatusCode != http.StatusOK || "sha256:"+hex.EncodeToString(sum[:]) != d.String() || int64(len(full)) != size {
		t.Fatalf("GET blob: %d, %d bytes", resp.StatusCode, len(full))
	}
	for k, want := range map[string]string{
		"Docker-Content-Digest": d.String(), "Content-Type": "application/octet-stream", "ETag": `"` + d.String() + `"`,
		"Cache-Control": "max-age=31536000", "Docker-Distribution-Api-Version": "registry/2.0", "Accept-Ranges": "bytes",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET blob: %s = %q, want %q", k, got, want)
		}
	}
	resp, body := get(http.MethodHead, "app", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != size || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("HEAD blob: %d, length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	resp, body = get(http.MethodGet, "app", map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[10:20]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", size) {
		t.Errorf("GET blob with a range: %d, %d bytes, Content-Range %q", resp.StatusCode, len(body), resp.Header.Get("Content-Range"))
	}
	resp, body = get(http.MethodGet, "app", map[string]string{"Range": "bytes=60000-"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[60000:]) {
		t.Errorf("GET blob from an offset to the end: %d, %d bytes, want %d", resp.StatusCode, len(body), len(full)-60000)
	}
	resp, body = get(http.MethodGet, "app", map[string]string{"Range": "bytes=0-9,30000-30009"})
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") ||
		!bytes.Contains(body, full[:10]) || !bytes.Contains(body, full[30000:30010]) {
		t.Errorf("GET blob with two ranges: %d, %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	resp, _ = get(http.MethodGet, "app", map[string]string{"If-None-Match": `"` + d.String() + `"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET blob If-None-Match its ETag: %d, want 304", resp.StatusCode)
	}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if resp, _ := get(m, "other", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s of a blob the repository does not link: %d, want 404", m, resp.StatusCode)
		}
	}
}
