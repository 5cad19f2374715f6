package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func startQuotaServer(t *testing.T, quota int64) *testServer {
	t.Helper()
	return startServerInit(t, func(o *InitOptions) { o.Quota = &quota }, nil)
}

// checkUsage asserts that the running counter agrees with a walk.
//
// Writes in the background may be under way: the Images page's index,
// rebuilt after a collection, writes the referrers index markers of the
// repositories it lists (counted, but a walk can fall between a write and
// its count). So a difference must last 5 s to fail.
func (ts *testServer) checkUsage(t *testing.T, when string) int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		walked := ts.usedBytes()
		got := ts.srv.StorageUsed()
		if got == walked {
			return walked
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: usage counter %d, storage walk %d", when, got, walked)
			return walked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Acceptance 4: fill to just under the quota; a push over it is refused
// with the quota message and leaves nothing behind; earlier images stay
// intact; after a delete and a collection pushes work again.
func TestQuotaRefusesPushOverItAndRecoversAfterGC(t *testing.T) {
	const quota = 2 << 20
	ts := startQuotaServer(t, quota)
	var refs []string
	var digests []v1.Hash
	for i := 0; quota-ts.usedBytes() > 400<<10; i++ {
		ref := fmt.Sprintf("quota/app:%d", i)
		digests = append(digests, ts.push(t, ref, dockerImage(t, 360<<10, 1)))
		refs = append(refs, ref)
	}
	ts.checkUsage(t, "after filling")

	// An image whose only new blob is a layer larger than what is left. Its
	// config goes first, so that the refused layer is the only upload.
	big := dockerImage(t, 512<<10, 1)
	cfg, _ := big.RawConfigFile()
	if err := remote.WriteLayer(ts.ref("quota/big").Context(), static.NewLayer(cfg, types.DockerConfigJSON), ts.admin()...); err != nil {
		t.Fatal(err)
	}
	before := ts.checkUsage(t, "before the refused push")
	err := remote.Write(ts.ref("quota/big:1"), big, ts.admin()...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED") ||
		!strings.Contains(err.Error(), "storage quota full") || !aboutUsed(err.Error(), before, quota) {
		t.Fatalf("push over the quota: err = %v, want 403 DENIED saying the quota is full", err)
	}
	if dirs := ts.uploadDirs(t); len(dirs) != 0 {
		t.Errorf("upload sessions left behind: %v", dirs)
	}
	if after := ts.checkUsage(t, "after the refused push"); after != before {
		t.Errorf("usage went from %d to %d with a refused push", before, after)
	}
	if m := ts.get(t, "/metrics"); !strings.Contains(m, fmt.Sprintf("edgecr_storage_quota_bytes %s", promNumber(quota))) ||
		!strings.Contains(m, "edgecr_storage_quota_rejections_total 1") {
		t.Errorf("metrics:\n%s", grepLines(m, "edgecr_storage"))
	}

	// Pulls, and a small push that fits, still work; so do deletes.
	for _, r := range refs {
		ts.pullVerified(t, r)
	}
	ts.push(t, "quota/small:1", dockerImage(t, 20<<10, 1))
	ts.deleteManifest(t, "quota/app", digests[0].String())
	ts.deleteManifest(t, "quota/app", digests[1].String())
	ts.age(t, old)
	rep := ts.gc(t, GCOptions{Grace: time.Hour})
	if rep.ReclaimedBytes < 700<<10 {
		t.Fatalf("gc reclaimed %d bytes", rep.ReclaimedBytes)
	}
	ts.checkUsage(t, "after gc")
	ts.push(t, "quota/big:1", big)
	ts.pullVerified(t, "quota/big:1")
	for _, r := range refs[2:] {
		ts.pullVerified(t, r)
	}
	ts.checkUsage(t, "at the end")
}

// A body of unknown length (chunked) is cut when it crosses the quota; the
// session and its data go.
func TestQuotaCutsStreamedUpload(t *testing.T) {
	ts := startQuotaServer(t, 1<<20)
	ts.push(t, "stream/a:1", dockerImage(t, 600<<10, 1))
	before := ts.checkUsage(t, "before")

	resp := ts.do("POST", "/v2/stream/raw/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	body := io.LimitReader(rand.NewChaCha8([32]byte{}), 2<<20) // a plain reader: no Content-Length
	req, _ := http.NewRequest("PATCH", ts.url(loc[strings.Index(loc, "/v2/"):]), body)
	req.SetBasicAuth("admin", ts.adminPW)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("PATCH: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"code":"DENIED"`) ||
		!strings.Contains(string(b), "storage quota full") || !strings.Contains(string(b), "stopped after") ||
		!aboutUsed(string(b), before, 1<<20) {
		t.Fatalf("streamed PATCH over the quota (usage before %d): %d %s", before, resp.StatusCode, b)
	}
	if dirs := ts.uploadDirs(t); len(dirs) != 0 {
		t.Errorf("upload sessions left behind: %v", dirs)
	}
	if after := ts.checkUsage(t, "after"); after != before {
		t.Errorf("usage went from %d to %d", before, after)
	}
	ts.pullVerified(t, "stream/a:1")
}

// A monolithic PUT (POST, then PUT with the whole body) over the quota is
// refused from its Content-Length before any byte is stored.
func TestQuotaRefusesMonolithicPut(t *testing.T) {
	ts := startQuotaServer(t, 256<<10)
	content := bytes.Repeat([]byte("q"), 300<<10)
	sum := sha256.Sum256(content)
	resp := ts.do("POST", "/v2/mono/a/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	before := ts.checkUsage(t, "before")
	resp = ts.do("PUT", loc[strings.Index(loc, "/v2/"):]+"&digest=sha256:"+hex.EncodeToString(sum[:]), "admin", ts.adminPW, content,
		map[string]string{"Content-Type": "application/octet-stream"})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "storage quota full") || !strings.Contains(string(b), "needs 300.0 KiB more") {
		t.Fatalf("PUT over the quota: %d %s", resp.StatusCode, b)
	}
	if dirs := ts.uploadDirs(t); len(dirs) != 0 {
		t.Errorf("upload sessions left behind: %v", dirs)
	}
	if after := ts.checkUsage(t, "after"); after >= before || after != 0 {
		t.Errorf("usage %d before the refused PUT (its session included), %d after, want 0", before, after)
	}
}

// With the quota full to the last bytes, even a manifest is refused; pulls
// are not.
func TestQuotaRefusesManifestWhenFull(t *testing.T) {
	const quota = 200 << 10
	ts := startQuotaServer(t, quota)
	img := dockerImage(t, 100<<10, 1)
	layers, _ := img.Layers()
	cfg, _ := img.RawConfigFile()
	for _, l := range append(layers, static.NewLayer(cfg, types.DockerConfigJSON)) {
		if err := remote.WriteLayer(ts.ref("full/a").Context(), l, ts.admin()...); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the rest, leaving 100 bytes. An upload session takes disk of its
	// own while it is open (counted against the quota), so blobs fill up
	// to 32 KiB and a padded manifest, which needs no session, the rest.
	filler := static.NewLayer(bytes.Repeat([]byte("f"), int(quota-ts.usedBytes()-71-(32<<10))), types.DockerLayer)
	if err := remote.WriteLayer(ts.ref("full/a").Context(), filler, ts.admin()...); err != nil {
		t.Fatal(err)
	}
	fd, _ := filler.Digest()
	fsize, _ := filler.Size()
	cd, _ := img.ConfigName()
	padded := func(pad int) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}],"annotations":{"pad":%q}}`,
			cd, len(cfg), fd, fsize, strings.Repeat("p", pad)))
	}
	putManifest := func(tag string, m []byte) int {
		resp := ts.do("PUT", "/v2/full/a/manifests/"+tag, "admin", ts.adminPW, m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		resp.Body.Close()
		return resp.StatusCode
	}
	// A probe measures what a tagged manifest stores besides its bytes.
	probe := padded(0)
	before := ts.usedBytes()
	if st := putManifest("probe", probe); st != http.StatusCreated {
		t.Fatalf("probe manifest: %d", st)
	}
	links := ts.usedBytes() - before - int64(len(probe))
	pad := quota - ts.usedBytes() - 100 - links - int64(len(padded(0)))
	if st := putManifest("pad", padded(int(pad))); st != http.StatusCreated {
		t.Fatalf("padding manifest: %d", st)
	}
	if left := quota - ts.checkUsage(t, "filled"); left != 100 {
		t.Fatalf("%d bytes left, want 100", left)
	}
	raw, _ := img.RawManifest()
	resp := ts.do("PUT", "/v2/full/a/manifests/v1", "admin", ts.adminPW, raw, map[string]string{"Content-Type": string(types.DockerManifestSchema2)})
	if code := errorCode(t, resp); resp.StatusCode != http.StatusForbidden || code != "DENIED" {
		t.Fatalf("manifest PUT with 100 bytes left: %d %s", resp.StatusCode, code)
	}
	l0, _ := layers[0].Digest()
	if st := ts.blobStatus(t, "full/a", l0); st != http.StatusOK {
		t.Fatalf("HEAD of a blob with the quota full: %d", st)
	}
	resp = ts.do("GET", "/v2/full/a/blobs/"+l0.String(), "admin", ts.adminPW, nil, nil)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n == 0 {
		t.Fatalf("GET of a blob with the quota full: %d, %d bytes", resp.StatusCode, n)
	}
}

// Without a quota the counter still follows pushes exactly.
func TestUsageCounterFollowsPushes(t *testing.T) {
	ts := startServer(t, nil)
	ts.checkUsage(t, "empty")
	ts.push(t, "count/a:1", dockerImage(t, 50<<10, 2))
	ts.checkUsage(t, "after a push")
	ts.pushIndex(t, "count/b:1", platformIndex(t, map[string]v1.Image{"linux/amd64": ociImage(t, 10<<10, 1), "linux/arm64": ociImage(t, 10<<10, 1)}))
	ts.checkUsage(t, "after an index")
	resp := ts.do("POST", "/v2/count/c/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	ts.checkUsage(t, "after an upload started")
	loc := resp.Header.Get("Location")
	resp = ts.do("DELETE", loc[strings.Index(loc, "/v2/"):], "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	ts.checkUsage(t, "after an upload cancelled")
	if m := ts.get(t, "/metrics"); !strings.Contains(m, "edgecr_storage_quota_bytes 0") {
		t.Errorf("metrics lack the (zero) quota")
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"40GiB", 40 << 30}, {"500MB", 500e6}, {"1.5GB", 1.5e9}, {"100MiB", 100 << 20}, {"1048576", 1 << 20},
		{"0", 0}, {"12 kb", 12000}, {"1.5KiB", 1536}, {"2Ti", 2 << 40}, {"7b", 7}, {"0.5B", 0}, {" 3 G ", 3e9},
	} {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"12XB", "", "GiB", "-1GiB", "1e3", "1..5GB", "1.2.3MB", "99999999999TiB", "ten MB", "5 G B"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
	if _, err := ParseSize("12XB"); err == nil || !strings.Contains(err.Error(), `unknown unit "XB"`) {
		t.Errorf("error for 12XB: %v", err)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 40 << 30: "40.0 GiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// aboutUsed reports whether a quota message states the usage that
// remains after the refusal (give or take an upload's bookkeeping files)
// and the quota.
func aboutUsed(msg string, used, quota int64) bool {
	var got, q int64
	i := strings.Index(msg, "used (")
	if i < 0 {
		return false
	}
	if _, err := fmt.Sscanf(msg[i:], "used (%d of %d bytes)", &got, &q); err != nil {
		return false
	}
	return q == quota && got >= used-4096 && got <= used+4096
}
