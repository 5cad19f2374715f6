package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestS3GCSharedLayerManyRepos: a collection on a bucket decides up to
// gcWorkers items at once. 24 repositories each keep an image on a shared
// base layer and lose one (deleted by digest in half of them, untagged in
// the other half) built on another layer they all share: that layer's 24
// links carry one marker key and are decided one after another. Exactly
// the garbage goes, every kept image pulls digest-verified, no marker is
// left behind.
func TestS3GCSharedLayerManyRepos(t *testing.T) {
	shortGCTimings(t)
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	base := randomLayer(t, 4<<10, types.OCILayer)
	shared := randomLayer(t, 4<<10, types.OCILayer)
	const repos = 24
	for i := range repos {
		name := fmt.Sprintf("fleet/r%02d", i)
		r1.push(t, name+":keep", ociImage(t, 4<<10, 1, base))
		d := r1.push(t, name+":gone", ociImage(t, 4<<10, 1, shared))
		ref := d.String()
		if i%2 == 1 {
			ref = "gone" // untagged: --delete-untagged takes the manifest
		}
		r1.deleteManifest(t, name, ref)
	}
	ctx := context.Background()
	rep, err := site.state(t).CollectGarbage(ctx, GCOptions{Grace: 0, DeleteUntagged: true})
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	t.Logf("gc: %+v", rep.GCSummary)
	// Gone: the shared layer, and per repository the other layer, the
	// config and the manifest of the lost image; its three layer links.
	if rep.BlobsDeleted != 1+3*repos || rep.LayerLinksDeleted != 3*repos || rep.ManifestsDeleted != repos/2 || rep.Failures != 0 {
		t.Fatalf("gc deleted %d blobs, %d layer links, %d manifests (%d failures); want %d, %d, %d (0)",
			rep.BlobsDeleted, rep.LayerLinksDeleted, rep.ManifestsDeleted, rep.Failures, 1+3*repos, 3*repos, repos/2)
	}
	sd, err := shared.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for i := range repos {
		name := fmt.Sprintf("fleet/r%02d", i)
		r1.pullVerified(t, name+":keep")
		if got := r1.blobStatus(t, name, sd); got != http.StatusNotFound {
			t.Fatalf("HEAD of the collected shared layer in %s: %d, want 404", name, got)
		}
	}
	if keys, _ := site.store.List(ctx, gcDoomPrefix, "", 10); len(keys) != 0 {
		t.Fatalf("markers left after the run: %q", keys)
	}
}
