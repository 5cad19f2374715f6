package server

import (
	"context"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// startServerInit is startServer with a hook on the data dir's init
// options (a quota, say), so that the state is what New reads.
func startServerInit(t *testing.T, initMod func(*InitOptions), mod func(*Options)) *testServer {
	t.Helper()
	dir := t.TempDir()
	io := testOptions("test")
	if initMod != nil {
		initMod(&io)
	}
	st, err := Ensure(dir, io, time.Now())
	if err != nil {
		t.Fatalf("initialising data dir: %v", err)
	}
	logs := &syncBuffer{}
	o := Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, o)
	if err != nil {
		cancel()
		t.Fatalf("starting server: %v", err)
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

func (ts *testServer) admin() []remote.Option { return ts.remoteOpts("admin", ts.adminPW) }

// usedBytes is what `edgecrd info` reports: a walk of the storage dir.
func (ts *testServer) usedBytes() int64 { return DirSize(ts.state.StorageDir()) }

// age backdates every file and directory under the storage dir by d, as if
// everything had been written (and last used) that long ago.
func (ts *testServer) age(t *testing.T, d time.Duration) {
	t.Helper()
	then := time.Now().Add(-d)
	err := filepath.WalkDir(ts.state.StorageDir(), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, then, then)
	})
	if err != nil {
		t.Fatalf("ageing storage: %v", err)
	}
}

// gc runs a collection in the server process (what the schedule does).
func (ts *testServer) gc(t *testing.T, o GCOptions) *GCReport {
	t.Helper()
	rep, err := ts.srv.CollectGarbage(context.Background(), o)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	return rep
}

// gcExternal runs a collection as `edgecrd gc` does: another State on the
// same data dir, loaded from disk, while the server keeps serving.
func (ts *testServer) gcExternal(t *testing.T, o GCOptions) *GCReport {
	t.Helper()
	st, err := Load(ts.state.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := st.CollectGarbage(context.Background(), o)
	if err != nil {
		t.Fatalf("gc (external): %v", err)
	}
	return rep
}

// ociImage is a random OCI image: OCI manifest, config and layer types.
func ociImage(t *testing.T, size int64, layers int, extra ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var ls []v1.Layer
	for range layers {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(img, append(extra, ls...)...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerImage is a random Docker v2 schema2 image.
func dockerImage(t *testing.T, size int64, layers int, extra ...v1.Layer) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for range layers {
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, append(extra, ls...)...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayer(t *testing.T, size int64, mt types.MediaType) v1.Layer {
	t.Helper()
	l, err := random.Layer(size, mt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// platformIndex is an OCI index of imgs, one platform each ("os/arch");
// each image's config gets that platform, as validate.Index wants.
func platformIndex(t *testing.T, imgs map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range slices.Sorted(maps.Keys(imgs)) {
		os, arch, _ := strings.Cut(p, "/")
		img := withPlatform(t, imgs[p], os, arch)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}},
		})
	}
	return idx
}

func withPlatform(t *testing.T, img v1.Image, os, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// indexChildren returns the images of an index by platform.
func indexChildren(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[m.Platform.OS+"/"+m.Platform.Architecture] = img
	}
	return out
}

func (ts *testServer) push(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(ts.ref(ref), img, ts.admin()...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (ts *testServer) pushIndex(t *testing.T, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(ts.ref(ref), idx, ts.admin()...); err != nil {
		t.Fatalf("pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pullVerified pulls ref and checks every blob against its digest (and
// the layers' diff IDs).
func (ts *testServer) pullVerified(t *testing.T, ref string, opts ...remote.Option) {
	t.Helper()
	if opts == nil {
		opts = ts.admin()
	}
	r := ts.ref(ref)
	desc, err := remote.Get(r, opts...)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("index %s does not verify: %v", ref, err)
		}
		return
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image %s does not verify: %v", ref, err)
	}
}

// blobStatus is the status of HEAD /v2/<repo>/blobs/<d>.
func (ts *testServer) blobStatus(t *testing.T, repo string, d v1.Hash) int {
	t.Helper()
	resp := ts.do("HEAD", "/v2/"+repo+"/blobs/"+d.String(), "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	return resp.StatusCode
}

func (ts *testServer) deleteManifest(t *testing.T, repo, reference string) {
	t.Helper()
	resp := ts.do("DELETE", "/v2/"+repo+"/manifests/"+reference, "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s:%s: status %d", repo, reference, resp.StatusCode)
	}
}

// uploadDirs lists every upload session left in storage.
func (ts *testServer) uploadDirs(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(ts.state.StorageDir(), func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && filepath.Base(filepath.Dir(p)) == "_uploads" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// blobsOf lists an image's blobs (config and layers) and its manifest
// digest with sizes.
func blobsOf(t *testing.T, img v1.Image) map[v1.Hash]int64 {
	t.Helper()
	out := map[v1.Hash]int64{}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	d, _ := img.Digest()
	out[d] = int64(len(raw))
	out[m.Config.Digest] = m.Config.Size
	for _, l := range m.Layers {
		out[l.Digest] = l.Size
	}
	return out
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func validateImage(img v1.Image) error { return validate.Image(img) }
