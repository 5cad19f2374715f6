package server

import (
	"context"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// old is how far tests backdate storage: past the one-hour grace they use.
const old = 2 * time.Hour

// Acceptance 1: delete by tag and by digest, for a Docker v2 schema2
// image, an OCI image and an OCI index; a collection reclaims exactly the
// blobs only they used; everything else still pulls, digest-verified.
func TestGCAfterDeleteByTagAndDigest(t *testing.T) {
	ts := startServer(t, nil)
	shared := randomLayer(t, 64<<10, types.DockerLayer)      // in every image, kept ones too
	keptShared := randomLayer(t, 48<<10, types.OCILayer)     // in one deleted and one kept image
	indexShared := randomLayer(t, 40<<10, types.DockerLayer) // across two children of a deleted index

	type pushed struct {
		repo, tag string
		digest    v1.Hash
		blobs     map[v1.Hash]int64 // manifests and blobs, children included for an index
		byTag     bool
	}
	var deleted, kept []pushed
	pushImage := func(repo, tag string, img v1.Image) pushed {
		return pushed{repo: repo, tag: tag, digest: ts.push(t, repo+":"+tag, img), blobs: blobsOf(t, img)}
	}
	pushIdx := func(repo, tag string, imgs map[string]v1.Image) pushed {
		idx := platformIndex(t, imgs)
		p := pushed{repo: repo, tag: tag, digest: ts.pushIndex(t, repo+":"+tag, idx), blobs: map[v1.Hash]int64{}}
		raw, _ := idx.RawManifest()
		p.blobs[p.digest] = int64(len(raw))
		for _, img := range indexChildren(t, idx) {
			for d, n := range blobsOf(t, img) {
				p.blobs[d] = n
			}
		}
		return p
	}

	for _, byTag := range []bool{true, false} {
		sfx := "digest"
		if byTag {
			sfx = "tag"
		}
		d := pushImage("acc1/docker", "by-"+sfx, dockerImage(t, 96<<10, 2, shared))
		o := pushImage("acc1/oci", "by-"+sfx, ociImage(t, 80<<10, 1, shared))
		x := pushIdx("acc1/index", "by-"+sfx, map[string]v1.Image{
			"linux/amd64": dockerImage(t, 72<<10, 1, shared, indexShared),
			"linux/arm64": dockerImage(t, 56<<10, 1, indexShared),
		})
		for _, p := range []*pushed{&d, &o, &x} {
			p.byTag = byTag
			deleted = append(deleted, *p)
		}
	}
	deleted = append(deleted, pushImage("acc1/oci", "shares-with-kept", ociImage(t, 32<<10, 1, keptShared)))
	kept = append(kept,
		pushImage("acc1/keep", "docker", dockerImage(t, 50<<10, 2, shared)),
		pushImage("acc1/keep", "oci", ociImage(t, 30<<10, 1, keptShared)),
		pushIdx("acc1/keep", "index", map[string]v1.Image{
			"linux/amd64": ociImage(t, 20<<10, 1),
			"linux/arm64": ociImage(t, 24<<10, 1),
		}),
	)

	// Expected: every digest of a deleted image that no kept image has.
	keptSet := map[v1.Hash]bool{}
	for _, p := range kept {
		for d := range p.blobs {
			keptSet[d] = true
		}
	}
	var want int64
	wantBlobs := map[v1.Hash]bool{}
	for _, p := range deleted {
		for d, n := range p.blobs {
			if !keptSet[d] && !wantBlobs[d] {
				wantBlobs[d] = true
				want += n
			}
		}
	}

	for _, p := range deleted {
		ref := p.digest.String()
		if p.byTag {
			ref = p.tag
		}
		ts.deleteManifest(t, p.repo, ref)
	}
	ts.age(t, old)
	before := ts.usedBytes()
	rep := ts.gc(t, GCOptions{DeleteUntagged: true, Grace: time.Hour, Trigger: "test"})
	// The counter agrees with a walk once the Images page's index, rebuilt
	// after a collection, has written the referrers index markers (2 bytes
	// a repository) the collection invalidated.
	after := ts.checkUsage(t, "after gc")

	if rep.ReclaimedBytes != want || rep.BlobsDeleted != len(wantBlobs) {
		t.Errorf("reclaimed %d bytes in %d blobs, want %d bytes in %d blobs", rep.ReclaimedBytes, rep.BlobsDeleted, want, len(wantBlobs))
	}
	for _, b := range rep.DeletedBlobs {
		if !wantBlobs[v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(b.Digest, "sha256:")}] {
			t.Errorf("deleted blob %s that is not garbage", b.Digest)
		}
	}
	// Untagged manifests: the three deleted by tag, the two children of
	// the index deleted by tag, the two children of the one deleted by
	// digest.
	if rep.ManifestsDeleted != 3+2+2 {
		t.Errorf("deleted %d manifests, want 7: %+v", rep.ManifestsDeleted, rep.DeletedManifests)
	}
	// Usage drops by the blobs, plus link and tag files (metadata), less
	// the markers written again.
	if drop := before - after; drop < want-64 || drop > want+16<<10 {
		t.Errorf("storage dropped by %d bytes, want %d (+ metadata up to 16 KiB)", drop, want)
	}

	for _, p := range kept {
		ts.pullVerified(t, p.repo+":"+p.tag)
	}
	// Swept blobs and their links are gone: HEAD on the repository says 404.
	for _, p := range deleted {
		for d := range p.blobs {
			if wantBlobs[d] {
				if st := ts.blobStatus(t, p.repo, d); st != http.StatusNotFound {
					t.Errorf("HEAD %s blob %s after gc: %d, want 404", p.repo, d, st)
				}
			}
		}
		if _, err := remote.Get(ts.ref(p.repo+"@"+p.digest.String()), ts.admin()...); err == nil {
			t.Errorf("%s@%s still pulls after delete + gc", p.repo, p.digest)
		}
	}

	// Recorded for info, metrics and the log.
	last, err := ts.state.LastGC()
	if err != nil || last == nil || last.ID != rep.ID || last.ReclaimedBytes != want {
		t.Fatalf("gc.json: %+v, %v", last, err)
	}
	m := ts.get(t, "/metrics")
	for _, s := range []string{
		`edgecr_gc_runs_total{result="success"} 1`,
		"edgecr_gc_reclaimed_bytes_total " + promNumber(want),
		"edgecr_gc_deleted_manifests_total 7",
		"edgecr_gc_last_reclaimed_bytes " + promNumber(want),
		"edgecr_gc_last_run_timestamp_seconds 1.",
	} {
		if !strings.Contains(m, s) {
			t.Errorf("metrics lack %q", s)
		}
	}
	if !strings.Contains(ts.logs.String(), `"msg":"garbage collection finished"`) {
		t.Error("no log line for the collection")
	}
}

// promNumber formats n as the Prometheus text format does.
func promNumber(n int64) string { return strconv.FormatFloat(float64(n), 'g', -1, 64) }

// Acceptance 3: a tagged index keeps its platform manifests and their
// blobs under --delete-untagged; untagged manifests go, except young ones
// and referrers of kept manifests.
func TestGCDeleteUntaggedKeepsTaggedIndexChildren(t *testing.T) {
	ts := startServer(t, nil)
	idx := platformIndex(t, map[string]v1.Image{"linux/amd64": ociImage(t, 64<<10, 2), "linux/arm64": dockerImage(t, 48<<10, 1)})
	idxDigest := ts.pushIndex(t, "acc3/app:multi", idx)
	amd := indexChildren(t, idx)["linux/amd64"]

	// Untagged: pushed by digest, and a tag moved to another image.
	untagged := ociImage(t, 32<<10, 1)
	ud, _ := untagged.Digest()
	if err := remote.Write(ts.ref("acc3/app@"+ud.String()), untagged, ts.admin()...); err != nil {
		t.Fatal(err)
	}
	retagged := ts.push(t, "acc3/app:v1", dockerImage(t, 16<<10, 1))
	ts.push(t, "acc3/app:v1", dockerImage(t, 16<<10, 1))

	// A referrer (OCI 1.1 subject) of the amd64 child, pushed by digest,
	// and a referrer of the untagged image, which goes with it.
	amdDigest, _ := amd.Digest()
	amdDesc, _ := partialDescriptor(amd)
	sigDigest := ts.pushReferrer(t, "acc3/app", *amdDesc)
	udDesc, _ := partialDescriptor(untagged)
	orphanDigest := ts.pushReferrer(t, "acc3/app", *udDesc)

	ts.age(t, old)
	// One untagged manifest pushed just now: younger than the grace period.
	young := ociImage(t, 8<<10, 1)
	yd, _ := young.Digest()
	if err := remote.Write(ts.ref("acc3/app@"+yd.String()), young, ts.admin()...); err != nil {
		t.Fatal(err)
	}

	rep := ts.gcExternal(t, GCOptions{DeleteUntagged: true, Grace: time.Hour})
	gone := map[string]bool{}
	for _, m := range rep.DeletedManifests {
		gone[m.Digest] = true
	}
	for what, d := range map[string]v1.Hash{"pushed by digest": ud, "tag moved away": retagged, "referrer of an untagged manifest": orphanDigest} {
		if !gone[d.String()] {
			t.Errorf("untagged manifest (%s) %s not deleted; deleted: %+v", what, d, rep.DeletedManifests)
		}
	}
	if len(gone) != 3 {
		t.Errorf("deleted %d manifests, want 3: %+v", len(gone), rep.DeletedManifests)
	}

	ts.pullVerified(t, "acc3/app:multi")
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		os, arch, _ := strings.Cut(p, "/")
		img, err := remote.Image(ts.ref("acc3/app:multi"), append(ts.admin(), remote.WithPlatform(v1.Platform{OS: os, Architecture: arch}))...)
		if err != nil {
			t.Fatalf("pulling %s of the index: %v", p, err)
		}
		if err := validateImage(img); err != nil {
			t.Fatalf("%s of the index does not verify: %v", p, err)
		}
	}
	ts.pullVerified(t, "acc3/app@"+amdDigest.String())
	ts.pullVerified(t, "acc3/app@"+sigDigest.String())
	ts.pullVerified(t, "acc3/app@"+yd.String())
	ts.pullVerified(t, "acc3/app:v1")
	if _, err := remote.Get(ts.ref("acc3/app@"+ud.String()), ts.admin()...); err == nil {
		t.Error("the untagged manifest still pulls")
	}
	if _, err := remote.Get(ts.ref("acc3/app@"+idxDigest.String()), ts.admin()...); err != nil {
		t.Errorf("the index by digest: %v", err)
	}
}

// The race the grace period cannot cover alone: a client uses an old,
// unreferenced blob between the collector's age check and its removal.
func TestGCPutsBackBlobUsedDuringSweep(t *testing.T) {
	ts := startServer(t, nil)
	layer := randomLayer(t, 32<<10, types.OCILayer)
	ld, _ := layer.Digest()
	d := ts.push(t, "race/a:1", ociImage(t, 8<<10, 1, layer))
	ts.deleteManifest(t, "race/a", d.String())
	ts.age(t, old)

	var fired bool
	rep := ts.gc(t, GCOptions{Grace: time.Hour, beforeRemove: func(p string) {
		if p == blobDir(digest(ld.String())) && !fired {
			fired = true
			// What a pushing client does first: HEAD the blob; the server
			// refreshes it and answers 200.
			if st := ts.blobStatus(t, "race/a", ld); st != http.StatusOK {
				t.Errorf("HEAD during gc: %d", st)
			}
		}
	}})
	if !fired {
		t.Fatal("the layer was not a candidate")
	}
	if rep.Restored == 0 {
		t.Errorf("nothing put back: %+v", rep.GCSummary)
	}
	for _, b := range rep.DeletedBlobs {
		if b.Digest == ld.String() {
			t.Fatal("the used layer was deleted")
		}
	}
	// The client now pushes a manifest that references it.
	ts.push(t, "race/a:2", ociImage(t, 8<<10, 1, layer))
	ts.pullVerified(t, "race/a:2")
}

// An untagged manifest that a client pulls by digest while the collector
// removes untagged manifests goes back, and keeps its layers.
func TestGCKeepsUntaggedManifestPulledDuringRun(t *testing.T) {
	ts := startServer(t, nil)
	img := ociImage(t, 24<<10, 2)
	d, _ := img.Digest()
	if err := remote.Write(ts.ref("race/c@"+d.String()), img, ts.admin()...); err != nil {
		t.Fatal(err)
	}
	ts.age(t, old)
	var fired bool
	rep := ts.gc(t, GCOptions{DeleteUntagged: true, Grace: time.Hour, beforeRemove: func(p string) {
		if p == revisionLinkDir("race/c", digest(d.String())) {
			fired = true
			resp := ts.do("GET", "/v2/race/c/manifests/"+d.String(), "admin", ts.adminPW, nil,
				map[string]string{"Accept": string(types.OCIManifestSchema1)})
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET during gc: %d", resp.StatusCode)
			}
		}
	}})
	if !fired || rep.ManifestsDeleted != 0 || rep.BlobsDeleted != 0 || rep.Restored != 1 {
		t.Fatalf("fired %v; %d manifests, %d blobs deleted, %d restored; want 0, 0, 1", fired, rep.ManifestsDeleted, rep.BlobsDeleted, rep.Restored)
	}
	ts.pullVerified(t, "race/c@"+d.String())
}

// A manifest pushed after the mark (so the collector never saw it) that
// references an old, unreferenced blob keeps that blob alive.
func TestGCKeepsBlobReferencedByManifestPushedDuringRun(t *testing.T) {
	ts := startServer(t, nil)
	base := randomLayer(t, 40<<10, types.DockerLayer)
	d := ts.push(t, "race/b:old", dockerImage(t, 8<<10, 1, base))
	ts.deleteManifest(t, "race/b", d.String())
	ts.age(t, old)

	var once bool
	rep := ts.gcExternal(t, GCOptions{Grace: time.Hour, beforeRemove: func(string) {
		if !once {
			once = true
			ts.push(t, "race/b:new", dockerImage(t, 8<<10, 1, base))
		}
	}})
	if !once {
		t.Fatal("nothing was swept")
	}
	bd, _ := base.Digest()
	for _, b := range rep.DeletedBlobs {
		if b.Digest == bd.String() {
			t.Fatal("the base layer was deleted under a new manifest")
		}
	}
	ts.pullVerified(t, "race/b:new")
}

// A file that vanishes under the collector counts as done.
func TestGCMissingFileIsDone(t *testing.T) {
	ts := startServer(t, nil)
	d := ts.push(t, "gone/a:1", dockerImage(t, 16<<10, 2))
	ts.deleteManifest(t, "gone/a", d.String())
	ts.age(t, old)
	var removed int
	rep, err := CollectGarbage(context.Background(), ts.state.StorageDir(), GCOptions{Grace: time.Hour, beforeRemove: func(p string) {
		if strings.Contains(p, "/blobs/") && removed == 0 {
			removed++
			if err := os.RemoveAll(osPath(ts.state.StorageDir(), p)); err != nil {
				t.Error(err)
			}
		}
	}})
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if removed != 1 || rep.BlobsDeleted != 3 || len(rep.Errors) != 0 {
		t.Fatalf("blobs deleted %d (want 3 of 4: one vanished), errors %v", rep.BlobsDeleted, rep.Errors)
	}
}

// After a sweep, a client that pushes the same layer again must upload it:
// the registry may not remember that it existed (the blob descriptor
// cache would), or the new manifest would reference a missing blob.
func TestGCThenPushSameLayerAgain(t *testing.T) {
	ts := startServer(t, nil)
	layer := randomLayer(t, 64<<10, types.DockerLayer)
	ld, _ := layer.Digest()
	d := ts.push(t, "again/a:1", dockerImage(t, 8<<10, 1, layer))
	if st := ts.blobStatus(t, "again/a", ld); st != http.StatusOK { // the server has looked at it
		t.Fatalf("HEAD before: %d", st)
	}
	ts.pullVerified(t, "again/a:1")
	ts.deleteManifest(t, "again/a", d.String())
	ts.age(t, old)
	rep := ts.gcExternal(t, GCOptions{Grace: time.Hour})
	if rep.BlobsDeleted != 4 { // manifest, config, two layers
		t.Fatalf("deleted %d blobs, want 4", rep.BlobsDeleted)
	}
	if st := ts.blobStatus(t, "again/a", ld); st != http.StatusNotFound {
		t.Fatalf("HEAD of the swept layer: %d, want 404", st)
	}
	ts.push(t, "again/a:2", dockerImage(t, 8<<10, 1, layer))
	ts.pullVerified(t, "again/a:2")
	ts.push(t, "again/other:1", dockerImage(t, 8<<10, 1, layer))
	ts.pullVerified(t, "again/other:1")
}

// A collector that died between moving items aside and deciding leaves
// them in the trash; the next run puts them back unseen.
func TestGCRecoversTrashOfInterruptedRun(t *testing.T) {
	ts := startServer(t, nil)
	img := ociImage(t, 16<<10, 1)
	ts.push(t, "crash/a:1", img)
	m, _ := img.Manifest()
	ld := digest(m.Layers[0].Digest.String())
	root := ts.state.StorageDir()
	trashed := osPath(root, path.Join(trashRoot, "deadbeef", "blobs", "sha256", ld.Encoded()[:2], ld.Encoded()))
	if err := os.MkdirAll(path.Dir(trashed), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(osPath(root, blobDir(ld)), trashed); err != nil {
		t.Fatal(err)
	}
	if err := validateImage(mustImage(t, ts, "crash/a:1")); err == nil {
		t.Fatal("image verifies with its layer in the trash")
	}
	rep := ts.gc(t, GCOptions{Grace: time.Hour})
	if rep.BlobsDeleted != 0 {
		t.Fatalf("deleted %d blobs", rep.BlobsDeleted)
	}
	if _, err := os.Stat(osPath(root, trashRoot)); err == nil {
		if ents, _ := os.ReadDir(osPath(root, trashRoot)); len(ents) != 0 {
			t.Fatalf("trash not emptied: %v", ents)
		}
	}
	ts.pullVerified(t, "crash/a:1")
}

func TestGCPurgesStaleUploadsOnly(t *testing.T) {
	ts := startServer(t, nil)
	start := func() string {
		resp := ts.do("POST", "/v2/up/a/blobs/uploads/", "admin", ts.adminPW, nil, nil)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		resp = ts.do("PATCH", loc[strings.Index(loc, "/v2/"):], "admin", ts.adminPW, []byte(strings.Repeat("x", 1000)), map[string]string{"Content-Type": "application/octet-stream"})
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH: %d", resp.StatusCode)
		}
		return resp.Header.Get("Docker-Upload-UUID")
	}
	stale := start()
	ts.age(t, 48*time.Hour)
	fresh := start()
	rep := ts.gc(t, GCOptions{Grace: time.Hour})
	if rep.UploadsPurged != 1 || rep.UploadBytesPurged < 1000 {
		t.Fatalf("purged %d uploads, %d bytes; want 1 of at least 1000", rep.UploadsPurged, rep.UploadBytesPurged)
	}
	dirs := ts.uploadDirs(t)
	if len(dirs) != 1 || !strings.HasSuffix(dirs[0], fresh) || strings.HasSuffix(dirs[0], stale) {
		t.Fatalf("upload dirs after gc: %v (fresh %s)", dirs, fresh)
	}
}

func TestGCDryRunChangesNothing(t *testing.T) {
	ts := startServer(t, nil)
	d := ts.push(t, "dry/a:1", dockerImage(t, 16<<10, 2))
	ts.push(t, "dry/a:2", dockerImage(t, 16<<10, 1))
	ts.deleteManifest(t, "dry/a", "2")
	ts.deleteManifest(t, "dry/a", d.String())
	ts.age(t, old)
	before := ts.usedBytes()
	rep := ts.gc(t, GCOptions{DryRun: true, DeleteUntagged: true, Grace: time.Hour})
	if after := ts.usedBytes(); after != before {
		t.Fatalf("dry run changed storage: %d -> %d", before, after)
	}
	if rep.BlobsDeleted != 4+3 || rep.ManifestsDeleted != 1 || len(rep.DeletedBlobs) != 7 {
		t.Fatalf("dry run reports %d blobs, %d manifests", rep.BlobsDeleted, rep.ManifestsDeleted)
	}
	if last, _ := ts.state.LastGC(); last != nil {
		t.Fatal("a dry run was recorded in gc.json")
	}
	real := ts.gc(t, GCOptions{DeleteUntagged: true, Grace: time.Hour})
	if real.ReclaimedBytes != rep.ReclaimedBytes {
		t.Fatalf("dry run said %d bytes, the run reclaimed %d", rep.ReclaimedBytes, real.ReclaimedBytes)
	}
}

// A manifest the collector cannot read stops it before anything goes.
func TestGCStopsOnUnreadableManifest(t *testing.T) {
	ts := startServer(t, nil)
	d := ts.push(t, "bad/a:1", dockerImage(t, 8<<10, 1))
	g := ts.push(t, "bad/b:1", dockerImage(t, 8<<10, 1))
	ts.deleteManifest(t, "bad/b", g.String())
	if err := os.WriteFile(osPath(ts.state.StorageDir(), blobDataPath(digest(d.String()))), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.age(t, old)
	before := ts.usedBytes()
	_, err := ts.state.CollectGarbage(context.Background(), GCOptions{Grace: time.Hour})
	if err == nil || !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Fatalf("err = %v", err)
	}
	if after := ts.usedBytes(); after != before {
		t.Fatalf("storage changed: %d -> %d", before, after)
	}
}

func TestGCNegativeGrace(t *testing.T) {
	if _, err := CollectGarbage(context.Background(), t.TempDir(), GCOptions{Grace: -time.Hour}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("err = %v", err)
	}
}

// A collection by another process shows in the server's metrics and
// usage without a restart.
func TestExternalGCReachesMetricsAndUsage(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.UsageRefresh = 50 * time.Millisecond })
	d := ts.push(t, "ext/a:1", dockerImage(t, 64<<10, 1))
	ts.deleteManifest(t, "ext/a", d.String())
	ts.age(t, old)
	rep := ts.gcExternal(t, GCOptions{Grace: time.Hour})
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := ts.get(t, "/metrics")
		if strings.Contains(m, "edgecr_gc_reclaimed_bytes_total "+promNumber(rep.ReclaimedBytes)) &&
			ts.srv.StorageUsed() == ts.usedBytes() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed the external run:\n%s", grepLines(m, "edgecr_gc"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func partialDescriptor(img v1.Image) (*v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}, nil
}

func mustImage(t *testing.T, ts *testServer, ref string) v1.Image {
	t.Helper()
	img, err := remote.Image(ts.ref(ref), ts.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushReferrer pushes, by digest, an OCI artifact manifest whose subject
// is subject. It bypasses go-containerregistry's referrers-tag fallback
// (a tagged index listing the referrers), which would keep it on its own.
func (ts *testServer) pushReferrer(t *testing.T, repo string, subject v1.Descriptor) v1.Hash {
	t.Helper()
	sig := mutate.Subject(ociImage(t, 1<<10, 1), subject).(v1.Image)
	m, err := sig.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := sig.Layers()
	cfg, _ := sig.RawConfigFile()
	for _, l := range append(layers, static.NewLayer(cfg, m.Config.MediaType)) {
		if err := remote.WriteLayer(ts.ref(repo).Context(), l, ts.admin()...); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := sig.RawManifest()
	d, _ := sig.Digest()
	resp := ts.do("PUT", "/v2/"+repo+"/manifests/"+d.String(), "admin", ts.adminPW, raw, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT referrer: %d", resp.StatusCode)
	}
	return d
}
