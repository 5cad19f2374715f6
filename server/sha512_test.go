package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushBlobAs uploads b monolithically under digest d (any algorithm).
func (ts *testServer) pushBlobAs(t *testing.T, repo string, b []byte, d digest) *http.Response {
	t.Helper()
	resp := ts.do("POST", "/v2/"+repo+"/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %d", resp.StatusCode)
	}
	loc := strings.TrimPrefix(resp.Header.Get("Location"), "https://"+ts.addr)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp = ts.do("PUT", loc+sep+"digest="+d.String(), "admin", ts.adminPW, b, map[string]string{"Content-Type": "application/octet-stream"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT blob %s: %d", d, resp.StatusCode)
	}
	return resp
}

// sha512Image pushes a config (sha256) and a layer addressed by sha512,
// then a manifest referencing them under tag, and returns the layer.
func (ts *testServer) sha512Image(t *testing.T, repo, tag string) ([]byte, digest) {
	t.Helper()
	layer := make([]byte, 4096)
	rand.Read(layer)
	ld, _ := digestOf(layer, "sha512")
	ts.pushBlobAs(t, repo, layer, ld)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, _ := digestOf(cfg, "sha256")
	ts.pushBlobAs(t, repo, cfg, cd)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.OCIManifestSchema1),
		"config":        map[string]any{"mediaType": string(types.OCIConfigJSON), "digest": cd.String(), "size": len(cfg)},
		"layers":        []any{map[string]any{"mediaType": string(types.OCILayer), "digest": ld.String(), "size": len(layer)}},
	})
	resp := ts.do("PUT", "/v2/"+repo+"/manifests/"+tag, "admin", ts.adminPW, m, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: %d", resp.StatusCode)
	}
	return layer, ld
}

// A layer pushed by its sha512 digest is stored by distribution under its
// sha256 (the sha512 is a link to it): the collector must keep that blob
// for a kept manifest that names the sha512.
func TestGCKeepsSha512Layers(t *testing.T) {
	ts := startServer(t, nil)
	layer, ld := ts.sha512Image(t, "s512/app", "v1")
	ts.age(t, old)
	rep := ts.gc(t, GCOptions{Grace: time.Hour, DeleteUntagged: true})
	if rep.BlobsDeleted != 0 {
		t.Errorf("gc deleted %d blobs of a tagged image: %+v", rep.BlobsDeleted, rep.DeletedBlobs)
	}
	resp := ts.do("GET", "/v2/s512/app/blobs/"+ld.String(), "admin", ts.adminPW, nil, nil)
	defer resp.Body.Close()
	var buf strings.Builder
	if _, err := io.Copy(&buf, resp.Body); err != nil || resp.StatusCode != http.StatusOK || buf.String() != string(layer) {
		t.Fatalf("the sha512 layer after gc: %d, %d bytes (%v)", resp.StatusCode, buf.Len(), err)
	}
}

// A HEAD of a blob by its sha512 refreshes the sha256 data it is stored
// under: what a client is told exists is not swept before its manifest
// comes.
func TestFreshnessFollowsSha512Link(t *testing.T) {
	ts := startServer(t, nil)
	layer := []byte("a layer addressed by sha512")
	ld, _ := digestOf(layer, "sha512")
	ts.pushBlobAs(t, "s512/fresh", layer, ld)
	cd, _ := digestOf(layer, "sha256")
	ts.age(t, old)
	resp := ts.do("HEAD", "/v2/s512/fresh/blobs/"+ld.String(), "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	fi, err := os.Stat(osPath(ts.state.StorageDir(), blobDataPath(cd)))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(fi.ModTime()) > time.Hour {
		t.Errorf("the sha256 data of a sha512 blob told to exist is %s old", time.Since(fi.ModTime()).Round(time.Second))
	}
	rep := ts.gc(t, GCOptions{Grace: time.Hour})
	if rep.BlobsDeleted != 0 {
		t.Errorf("gc deleted %+v", rep.DeletedBlobs)
	}
}

// sha512 blobs end to end: the digest headers name the sha512 (not the
// sha256 distribution stores them under), and a mount by sha512 makes
// the blob readable by sha512 in the target repository.
func TestSha512BlobHeadersAndMount(t *testing.T) {
	ts := startServer(t, nil)
	blob := []byte("sha512 content")
	d, _ := digestOf(blob, "sha512")
	resp := ts.pushBlobAs(t, "s512/src", blob, d)
	if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() || !strings.HasSuffix(resp.Header.Get("Location"), "/blobs/"+d.String()) {
		t.Errorf("upload PUT: Docker-Content-Digest %q, Location %q; want %s", got, resp.Header.Get("Location"), d)
	}
	check := func(repo string) {
		t.Helper()
		for _, m := range []string{"HEAD", "GET"} {
			resp := ts.do(m, "/v2/"+repo+"/blobs/"+d.String(), "admin", ts.adminPW, nil, nil)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() || (m == "GET" && string(b) != string(blob)) {
				t.Errorf("%s %s: %d, Docker-Content-Digest %q, body %q", m, repo, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), b)
			}
		}
	}
	check("s512/src")
	resp = ts.do("POST", "/v2/s512/dst/blobs/uploads/?from=s512/src&mount="+d.String(), "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("mount: %d, Docker-Content-Digest %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	check("s512/dst")
}

// Manifests addressed by sha512: PUT (a wrong digest is refused, nothing
// stored), GET and HEAD with the sha512 in Docker-Content-Digest; an index
// naming its child by sha512 keeps it through --delete-untagged, and so is
// a referrer pushed by sha512 of a tagged image, listed by the referrers
// API before and after GC and after an index rebuild.
func TestSha512Manifests(t *testing.T) {
	ts := startServer(t, nil)
	_, _ = ts.sha512Image(t, "s512/m", "base")
	childBody := func() []byte {
		resp := ts.do("GET", "/v2/s512/m/manifests/base", "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}()
	hdr := map[string]string{"Content-Type": string(types.OCIManifestSchema1)}
	// Make the child untagged: only the index (by sha512) reaches it.
	resp := ts.do("DELETE", "/v2/s512/m/tags/base", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	child, _ := digestOf(childBody, "sha512")
	child256, _ := digestOf(childBody, "sha256")

	bad, _ := digestOf([]byte("other"), "sha512")
	resp = ts.do("PUT", "/v2/s512/m/manifests/"+bad.String(), "admin", ts.adminPW, childBody, hdr)
	if code := errorCode(t, resp); resp.StatusCode != http.StatusBadRequest || code != "DIGEST_INVALID" {
		t.Errorf("PUT by a wrong sha512: %d %s, want 400 DIGEST_INVALID", resp.StatusCode, code)
	}
	if _, err := os.Stat(osPath(ts.state.StorageDir(), revisionLinkDir("s512/m", bad))); !os.IsNotExist(err) {
		t.Errorf("a refused sha512 PUT left a revision: %v", err)
	}

	resp = ts.do("PUT", "/v2/s512/m/manifests/"+child.String(), "admin", ts.adminPW, childBody, hdr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != child.String() || !strings.HasSuffix(resp.Header.Get("Location"), child.String()) {
		t.Fatalf("PUT by sha512: %d, Docker-Content-Digest %q, Location %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Location"))
	}
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": string(types.OCIImageIndex),
		"manifests": []any{map[string]any{"mediaType": string(types.OCIManifestSchema1), "digest": child.String(), "size": len(childBody)}},
	})
	resp = ts.do("PUT", "/v2/s512/m/manifests/multi", "admin", ts.adminPW, idx, map[string]string{"Content-Type": string(types.OCIImageIndex)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT index naming a sha512 child: %d", resp.StatusCode)
	}
	idxDesc := subjectDesc(t, ts, "s512/m:multi")
	sigBody := artifactManifest(t, "application/vnd.example.sig", &idxDesc, "512")
	sig, _ := digestOf(sigBody, "sha512")
	if err := remoteWriteEmptyConfig(ts, "s512/m"); err != nil {
		t.Fatal(err)
	}
	resp = ts.do("PUT", "/v2/s512/m/manifests/"+sig.String(), "admin", ts.adminPW, sigBody, hdr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != idxDesc.Digest.String() {
		t.Fatalf("PUT referrer by sha512: %d, OCI-Subject %q", resp.StatusCode, resp.Header.Get("OCI-Subject"))
	}
	listed := func(when string) {
		t.Helper()
		l, _ := ts.referrers(t, "s512/m", idxDesc.Digest.String(), "")
		if len(l.Manifests) != 1 || l.Manifests[0].Digest != sig.String() {
			t.Errorf("%s: referrers %v, want [%s]", when, digestsOf(l), sig)
		}
	}
	listed("after push")

	ts.age(t, old)
	rep := ts.gc(t, GCOptions{Grace: time.Hour, DeleteUntagged: true})
	if rep.BlobsDeleted != 0 || rep.ManifestsDeleted != 0 {
		t.Errorf("gc deleted %+v %+v", rep.DeletedManifests, rep.DeletedBlobs)
	}
	for _, d := range []digest{child, child256, sig} {
		for _, m := range []string{"HEAD", "GET"} {
			resp := ts.do(m, "/v2/s512/m/manifests/"+d.String(), "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
				t.Errorf("%s %s after gc: %d, Docker-Content-Digest %q", m, d, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
			}
		}
	}
	listed("after gc --delete-untagged")
	if err := os.RemoveAll(osPath(ts.state.StorageDir(), referrersDir("s512/m"))); err != nil {
		t.Fatal(err)
	}
	listed("after a rebuild of the index")
}

func remoteWriteEmptyConfig(ts *testServer, repo string) error {
	return remote.WriteLayer(ts.ref(repo).Context(), static.NewLayer([]byte("{}"), emptyConfigType), ts.admin()...)
}

// A DELETE by sha512 deletes the manifest, not only its sha512 address.
func TestSha512ManifestDelete(t *testing.T) {
	ts := startServer(t, nil)
	ts.sha512Image(t, "s512/del", "v1")
	resp := ts.do("GET", "/v2/s512/del/manifests/v1", "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d, _ := digestOf(body, "sha512")
	d256, _ := digestOf(body, "sha256")
	resp = ts.do("PUT", "/v2/s512/del/manifests/"+d.String(), "admin", ts.adminPW, body, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT by sha512: %d", resp.StatusCode)
	}
	resp = ts.do("DELETE", "/v2/s512/del/manifests/"+d.String(), "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE by sha512: %d, want 202", resp.StatusCode)
	}
	for _, ref := range []string{d.String(), d256.String(), "v1"} {
		resp := ts.do("GET", "/v2/s512/del/manifests/"+ref, "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s after DELETE by sha512: %d, want 404", ref, resp.StatusCode)
		}
	}
}

// The start-up repair judges a tag by its content: a layer pushed by sha512
// (stored under its sha256) and an index naming its child by sha512 are
// there, and the tags stay.
func TestRepairKeepsSha512Content(t *testing.T) {
	ts := startServer(t, nil)
	ts.sha512Image(t, "s512/rep", "layers")
	resp := ts.do("GET", "/v2/s512/rep/manifests/layers", "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
	child, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cd, _ := digestOf(child, "sha512")
	resp = ts.do("PUT", "/v2/s512/rep/manifests/"+cd.String(), "admin", ts.adminPW, child, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": string(types.OCIImageIndex),
		"manifests": []any{map[string]any{"mediaType": string(types.OCIManifestSchema1), "digest": cd.String(), "size": len(child)}},
	})
	resp = ts.do("PUT", "/v2/s512/rep/manifests/index", "admin", ts.adminPW, idx, map[string]string{"Content-Type": string(types.OCIImageIndex)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT index: %d", resp.StatusCode)
	}
	ts.age(t, old)
	rep, err := RepairStorage(context.Background(), ts.state.StorageDir(), RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 0 {
		t.Errorf("repair removed tags of whole sha512 content: %+v", rep.Removed)
	}
}

// Pushing an index that names its child by sha512 refreshes the child's
// layers (stored under their sha256): the collector must not sweep them
// while the index is being pushed.
func TestFreshnessWalksSha512Child(t *testing.T) {
	ts := startServer(t, nil)
	layer, _ := ts.sha512Image(t, "s512/walk", "base")
	resp := ts.do("GET", "/v2/s512/walk/manifests/base", "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
	child, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cd, _ := digestOf(child, "sha512")
	resp = ts.do("PUT", "/v2/s512/walk/manifests/"+cd.String(), "admin", ts.adminPW, child, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	ts.age(t, old)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": string(types.OCIImageIndex),
		"manifests": []any{map[string]any{"mediaType": string(types.OCIManifestSchema1), "digest": cd.String(), "size": len(child)}},
	})
	resp = ts.do("PUT", "/v2/s512/walk/manifests/index", "admin", ts.adminPW, idx, map[string]string{"Content-Type": string(types.OCIImageIndex)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT index: %d", resp.StatusCode)
	}
	ld, _ := digestOf(layer, "sha256")
	fi, err := os.Stat(osPath(ts.state.StorageDir(), blobDataPath(ld)))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(fi.ModTime()) > time.Hour {
		t.Errorf("the layer of the index's sha512 child is %s old after the index push", time.Since(fi.ModTime()).Round(time.Second))
	}
}
