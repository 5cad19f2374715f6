package server

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestImagesEmpty(t *testing.T) {
	ctx := context.Background()
	t.Run("running server, nothing pushed", func(t *testing.T) {
		ts := startServer(t, nil)
		repos, err := ts.state.Images(ctx)
		if err != nil || repos == nil || len(repos) != 0 {
			t.Fatalf("Images = %v, %v; want an empty list", repos, err)
		}
	})
	t.Run("no storage dir", func(t *testing.T) {
		st := &State{Dir: t.TempDir()}
		repos, err := st.Images(ctx)
		if err != nil || repos == nil || len(repos) != 0 {
			t.Fatalf("Images = %v, %v; want an empty list", repos, err)
		}
		if err := st.DeleteTag(ctx, "app", "v1"); !errors.Is(err, ErrTagNotFound) {
			t.Fatalf("DeleteTag = %v, want ErrTagNotFound", err)
		}
		if _, err := os.Stat(st.StorageDir()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("storage dir created: %v", err)
		}
	})
}

func TestImagesListsRepositoriesAndTags(t *testing.T) {
	ts := startServer(t, nil)
	common := randomLayer(t, 8<<10, types.OCILayer)
	a := ociImage(t, 4<<10, 1, common)
	b := ociImage(t, 5<<10, 2, common)
	da := ts.push(t, "inv/app:v1", a)
	ts.push(t, "inv/app:latest", a)
	db := ts.push(t, "inv/app:v2", b)

	// Two platforms sharing a layer; arm with a variant.
	shared := randomLayer(t, 16<<10, types.OCILayer)
	amd := withPlatform(t, ociImage(t, 2<<10, 1, shared), "linux", "amd64")
	arm := withPlatform(t, ociImage(t, 3<<10, 1, shared), "linux", "arm")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}},
	)
	di := ts.pushIndex(t, "inv/app:multi", idx)
	rawIdx, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}

	c := dockerImage(t, 6<<10, 2)
	dc := ts.push(t, "inv/base:1.0", c)

	u := ociImage(t, 1<<10, 1)
	du, err := u.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ts.push(t, "inv/untagged@"+du.String(), u)

	// Sizes computed independently of images.go: the union of each
	// image's manifest, config and layers (blobsOf), summed.
	indexBlobs := unionBlobs(map[v1.Hash]int64{di: int64(len(rawIdx))}, blobsOf(t, amd), blobsOf(t, arm))
	if naive := int64(len(rawIdx)) + sumBlobs(blobsOf(t, amd)) + sumBlobs(blobsOf(t, arm)); sumBlobs(indexBlobs) >= naive {
		t.Fatalf("test images share nothing: %d >= %d", sumBlobs(indexBlobs), naive)
	}
	want := []ImageRepo{
		{
			Name: "inv/app",
			Size: sumBlobs(unionBlobs(blobsOf(t, a), blobsOf(t, b), indexBlobs)),
			Tags: []ImageTag{
				{Tag: "latest", Digest: da.String(), MediaType: string(types.OCIManifestSchema1), Size: sumBlobs(blobsOf(t, a)), SharedWith: []string{"v1"}},
				{Tag: "multi", Digest: di.String(), MediaType: string(types.OCIImageIndex), Size: sumBlobs(indexBlobs), Platforms: []string{"linux/amd64", "linux/arm/v7"}},
				{Tag: "v1", Digest: da.String(), MediaType: string(types.OCIManifestSchema1), Size: sumBlobs(blobsOf(t, a)), SharedWith: []string{"latest"}},
				{Tag: "v2", Digest: db.String(), MediaType: string(types.OCIManifestSchema1), Size: sumBlobs(blobsOf(t, b))},
			},
		},
		{
			Name: "inv/base",
			Size: sumBlobs(blobsOf(t, c)),
			Tags: []ImageTag{
				{Tag: "1.0", Digest: dc.String(), MediaType: string(types.DockerManifestSchema2), Size: sumBlobs(blobsOf(t, c))},
			},
		},
		{Name: "inv/untagged", Tags: []ImageTag{}},
	}
	got, err := ts.state.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Images (-want +got):\n%s", d)
	}
}

func TestDeleteTagRemovesOnlyThatTag(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	img := ociImage(t, 4<<10, 1)
	d := ts.push(t, "del/app:v1", img)
	ts.push(t, "del/app:v2", img)
	ts.push(t, "del/other:v1", img)

	if err := ts.state.DeleteTag(ctx, "del/app", "v1"); err != nil {
		t.Fatal(err)
	}
	repos, err := ts.state.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	size := sumBlobs(blobsOf(t, img))
	want := []ImageRepo{
		{Name: "del/app", Size: size, Tags: []ImageTag{{Tag: "v2", Digest: d.String(), MediaType: string(types.OCIManifestSchema1), Size: size}}},
		{Name: "del/other", Size: size, Tags: []ImageTag{{Tag: "v1", Digest: d.String(), MediaType: string(types.OCIManifestSchema1), Size: size}}},
	}
	if diff := cmp.Diff(want, repos); diff != "" {
		t.Fatalf("Images after delete (-want +got):\n%s", diff)
	}
	if _, err := remote.Get(ts.ref("del/app:v1"), ts.admin()...); err == nil {
		t.Fatal("deleted tag still pulls")
	}
	ts.pullVerified(t, "del/app:v2")
	ts.pullVerified(t, "del/app@"+d.String())
	ts.pullVerified(t, "del/other:v1")

	// Gone now, and never there.
	for _, c := range []struct{ repo, tag string }{{"del/app", "v1"}, {"del/app", "v3"}, {"del/none", "v1"}, {"del", "v1"}} {
		err := ts.state.DeleteTag(ctx, c.repo, c.tag)
		if !errors.Is(err, ErrTagNotFound) {
			t.Errorf("DeleteTag(%s, %s) = %v, want ErrTagNotFound", c.repo, c.tag, err)
		} else if want := "deleting tag " + c.repo + ":" + c.tag + ": "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q does not start with %q", err, want)
		}
	}
	ts.pullVerified(t, "del/app:v2")
}

func TestDeleteTagRejectsInvalidNames(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	ts.push(t, "app:v1", ociImage(t, 1<<10, 1))
	ts.push(t, "x:v1", ociImage(t, 1<<10, 1))
	before := snapshot(t, ts.state.StorageDir())
	for _, c := range []struct{ repo, tag, msg string }{
		{"../x", "v1", "invalid repository name"},
		{"app/../x", "v1", "invalid repository name"},
		{"/x", "v1", "invalid repository name"},
		{"UPPER", "v1", "invalid repository name"},
		{"UPPER/x", "v1", "invalid repository name"},
		{"", "v1", "invalid repository name"},
		{strings.Repeat("a", 256), "v1", "invalid repository name"},
		{"app", "bad tag", "invalid tag"},
		{"app", "", "invalid tag"},
		{"app", "../v1", "invalid tag"},
		{"app", "x/../../v1", "invalid tag"},
		{"app", ".hidden", "invalid tag"},
		{"app", "-v1", "invalid tag"},
		{"app", strings.Repeat("v", 129), "invalid tag"},
	} {
		err := ts.state.DeleteTag(ctx, c.repo, c.tag)
		if err == nil || errors.Is(err, ErrTagNotFound) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("DeleteTag(%q, %q) = %v, want %q", c.repo, c.tag, err, c.msg)
		}
	}
	if d := diffSnapshots(before, snapshot(t, ts.state.StorageDir())); len(d) > 0 {
		t.Fatalf("storage changed:\n%s", strings.Join(d, "\n"))
	}
	ts.pullVerified(t, "app:v1")
	ts.pullVerified(t, "x:v1")
}

func TestImagesListsUnreadableManifests(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	good := ociImage(t, 2<<10, 1)
	dGood := ts.push(t, "bad/a:good", good)
	overwrite := func(d v1.Hash, content []byte) {
		t.Helper()
		p := osPath(ts.state.StorageDir(), blobDataPath(digest(d.String())))
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(d v1.Hash) {
		t.Helper()
		if err := os.Remove(osPath(ts.state.StorageDir(), blobDataPath(digest(d.String())))); err != nil {
			t.Fatal(err)
		}
	}

	dNotJSON := ts.push(t, "bad/a:notjson", ociImage(t, 1<<10, 1))
	overwrite(dNotJSON, []byte("{not json"))
	// Valid JSON, not what the digest says: distribution would serve it.
	dSwapped := ts.push(t, "bad/a:swapped", ociImage(t, 1<<10, 1))
	raw, _ := good.RawManifest()
	overwrite(dSwapped, raw)
	// An OCI manifest without mediaType that does not parse as an index
	// makes distribution's manifest store panic.
	dPanic := ts.push(t, "bad/a:panic", ociImage(t, 1<<10, 1))
	overwrite(dPanic, []byte(`{"schemaVersion":2,"manifests":1}`))
	dMissing := ts.push(t, "bad/a:missing", ociImage(t, 1<<10, 1))
	remove(dMissing)
	// An index whose arm64 child is gone.
	amd := withPlatform(t, ociImage(t, 1<<10, 1), "linux", "amd64")
	arm := withPlatform(t, ociImage(t, 1<<10, 1), "linux", "arm64")
	dIdx := ts.pushIndex(t, "bad/a:index", platformIndex(t, map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm}))
	dArm, _ := arm.Digest()
	remove(dArm)
	// A tag whose link is gone: not a tag (edgecrfs lists a tag only with
	// its current link), so not listed either.
	ts.push(t, "bad/a:nolink", good)
	if err := os.Remove(osPath(ts.state.StorageDir(), tagCurrentLink("bad/a", "nolink"))); err != nil {
		t.Fatal(err)
	}
	ts.push(t, "bad/b:1", good)

	repos, err := ts.state.Images(ctx)
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	if len(repos) != 2 || repos[0].Name != "bad/a" || repos[1].Name != "bad/b" {
		t.Fatalf("repositories = %+v", repos)
	}
	tags := map[string]ImageTag{}
	for _, it := range repos[0].Tags {
		tags[it.Tag] = it
	}
	for _, c := range []struct {
		tag    string
		digest v1.Hash
		errSub []string
	}{
		{"good", dGood, nil},
		{"notjson", dNotJSON, []string{"reading manifest " + dNotJSON.String()}},
		{"swapped", dSwapped, []string{dSwapped.String(), "does not match", dGood.String()}},
		{"panic", dPanic, []string{dPanic.String(), "malformed manifest"}},
		{"missing", dMissing, []string{"reading manifest " + dMissing.String()}},
		{"index", dIdx, []string{"linux/arm64 of the index", dArm.String()}},
	} {
		it, ok := tags[c.tag]
		if !ok {
			t.Errorf("tag %s not listed", c.tag)
			continue
		}
		if c.digest != (v1.Hash{}) && it.Digest != c.digest.String() {
			t.Errorf("%s: digest %s, want %s", c.tag, it.Digest, c.digest)
		}
		if c.errSub == nil {
			if it.Err != "" || it.Size != sumBlobs(blobsOf(t, good)) {
				t.Errorf("%s: %+v, want readable, size %d", c.tag, it, sumBlobs(blobsOf(t, good)))
			}
			continue
		}
		for _, s := range c.errSub {
			if !strings.Contains(it.Err, s) {
				t.Errorf("%s: Err = %q, want it to contain %q", c.tag, it.Err, s)
			}
		}
	}
	if _, ok := tags["nolink"]; ok || len(tags) != 6 {
		t.Errorf("bad/a has %d tags, want 6 without nolink: %+v", len(tags), repos[0].Tags)
	}
	if got := tags["index"].Platforms; !cmp.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms = %v", got)
	}
	// What could be read still counts: the index, both child manifests,
	// amd64's config and layers.
	rawIdx, err := os.ReadFile(osPath(ts.state.StorageDir(), blobDataPath(digest(dIdx.String()))))
	if err != nil {
		t.Fatal(err)
	}
	rawArm, _ := arm.RawManifest()
	if got, want := tags["index"].Size, int64(len(rawIdx))+sumBlobs(blobsOf(t, amd))+int64(len(rawArm)); got != want {
		t.Errorf("index size = %d, want %d", got, want)
	}
	if b := repos[1]; len(b.Tags) != 1 || b.Tags[0].Err != "" || b.Size != sumBlobs(blobsOf(t, good)) {
		t.Errorf("bad/b = %+v", b)
	}
}

// unionBlobs merges digest -> size maps.
func unionBlobs(ms ...map[v1.Hash]int64) map[v1.Hash]int64 {
	out := map[v1.Hash]int64{}
	for _, m := range ms {
		for h, n := range m {
			out[h] = n
		}
	}
	return out
}

func sumBlobs(m map[v1.Hash]int64) int64 {
	var n int64
	for _, s := range m {
		n += s
	}
	return n
}
