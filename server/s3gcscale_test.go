package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgecr/edgecr/server/kv"
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

// slowLeaseStore answers writes of the GC lease after delay, as a store
// slowed down by load does.
type slowLeaseStore struct {
	kv.Store
	delay time.Duration
}

func (s *slowLeaseStore) Put(ctx context.Context, key string, val []byte, ifVer kv.Version) (kv.Version, error) {
	if key == gcLeaseKey {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return s.Store.Put(ctx, key, val, ifVer)
}

// TestS3GCLeaseSlowRenewal: a store that answers the lease's renewals
// later than the renewal period (gcLeaseTTL/3) but within the lease does
// not stop a collection that outlasts several TTLs (a 2,000-tag
// collection stopped so on a loaded MinIO, issue 14).
func TestS3GCLeaseSlowRenewal(t *testing.T) {
	shortGCTimings(t)
	site := startS3Site(t)
	r1 := site.replica(t, nil)
	d := r1.push(t, "team/app:v1", ociImage(t, 16<<10, 1))
	r1.deleteManifest(t, "team/app", d.String())
	ctx := context.Background()
	slow := &slowLeaseStore{Store: site.store, delay: gcLeaseTTL * 2 / 5}
	st, err := s3ImageStorage(ctx, site.loc, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := GCOptions{Grace: 0, DeleteUntagged: true, beforeRemove: func(string) { time.Sleep(gcLeaseTTL) }}
	rep, err := collectGarbageShared(ctx, st, "slow-store/1", o)
	if err != nil {
		t.Fatalf("collection with renewals answered after %s (lease %s, renewed every %s): %v", slow.delay, gcLeaseTTL, gcLeaseTTL/3, err)
	}
	t.Logf("collection: %.1f s with the lease's writes answered after %s (TTL %s): %d blobs deleted",
		rep.DurationSeconds, slow.delay, gcLeaseTTL, rep.BlobsDeleted)
	if rep.DurationSeconds < 2*gcLeaseTTL.Seconds() || rep.BlobsDeleted == 0 || rep.Failures != 0 {
		t.Fatalf("collection took %.1f s (want more than two TTLs of %s), deleted %d blobs, %d failures",
			rep.DurationSeconds, gcLeaseTTL, rep.BlobsDeleted, rep.Failures)
	}
}
