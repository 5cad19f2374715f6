package server

import (
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The collector's one rule, reachable(): a referrer whose subject is kept
// is kept, also with --delete-untagged, also when the subject becomes
// tagged only during the run (deleteUntagged's re-check put the image back
// and deleted its signature before); a referrer whose subject goes, goes.
func TestGCReferrersFollowTheirSubject(t *testing.T) {
	ts := startServer(t, nil)
	tagged := ts.push(t, "gcref/app:v1", ociImage(t, 8<<10, 1))
	taggedDesc := subjectDesc(t, ts, "gcref/app:v1")
	_, keptSig := ts.putArtifact(t, "gcref/app", artifactManifest(t, "application/vnd.example.sig", &taggedDesc, "kept"))

	// An image pushed by digest (untagged) with a signature: both old.
	late := ociImage(t, 8<<10, 1)
	ld, _ := late.Digest()
	if err := remote.Write(ts.ref("gcref/app@"+ld.String()), late, ts.admin()...); err != nil {
		t.Fatal(err)
	}
	lateDesc := subjectDesc(t, ts, "gcref/app@"+ld.String())
	_, lateSig := ts.putArtifact(t, "gcref/app", artifactManifest(t, "application/vnd.example.sig", &lateDesc, "late"))

	// A third untagged image whose signature must go with it.
	gone := ociImage(t, 8<<10, 1)
	gd, _ := gone.Digest()
	if err := remote.Write(ts.ref("gcref/app@"+gd.String()), gone, ts.admin()...); err != nil {
		t.Fatal(err)
	}
	goneDesc := subjectDesc(t, ts, "gcref/app@"+gd.String())
	_, goneSig := ts.putArtifact(t, "gcref/app", artifactManifest(t, "application/vnd.example.sig", &goneDesc, "gone"))
	ts.age(t, old)

	raw, err := late.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var fired bool
	rep := ts.gc(t, GCOptions{DeleteUntagged: true, Grace: time.Hour, beforeRemove: func(p string) {
		if fired {
			return
		}
		fired = true
		// The untagged image gets a tag while the collector runs.
		resp := ts.do("PUT", "/v2/gcref/app/manifests/late", "admin", ts.adminPW, raw, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("tagging during gc: %d", resp.StatusCode)
		}
	}})
	if !fired {
		t.Fatal("nothing was a candidate")
	}
	deleted := map[string]bool{}
	for _, m := range rep.DeletedManifests {
		deleted[m.Digest] = true
	}
	for what, d := range map[string]string{"signature of a tagged image": keptSig.String(), "signature of an image tagged during the run": lateSig.String(), "image tagged during the run": ld.String()} {
		if deleted[d] {
			t.Errorf("%s %s was deleted", what, d)
		}
	}
	for what, d := range map[string]string{"untagged image": gd.String(), "its signature": goneSig.String()} {
		if !deleted[d] {
			t.Errorf("%s %s was kept; deleted: %v", what, d, rep.DeletedManifests)
		}
	}
	ts.pullVerified(t, "gcref/app:v1")
	ts.pullVerified(t, "gcref/app:late")
	for _, c := range []struct{ subject, sig string }{{tagged.String(), keptSig.String()}, {ld.String(), lateSig.String()}} {
		l, _ := ts.referrers(t, "gcref/app", c.subject, "")
		if len(l.Manifests) != 1 || l.Manifests[0].Digest != c.sig {
			t.Errorf("referrers of %s after gc: %v, want [%s]", c.subject, digestsOf(l), c.sig)
		}
	}
	if l, _ := ts.referrers(t, "gcref/app", gd.String(), ""); len(l.Manifests) != 0 {
		t.Errorf("referrers of the deleted image after gc: %v, want none", digestsOf(l))
	}
}

// The collector prunes index entries of referrers that are gone (and old),
// keeps the others, and puts back an entry a killed run left in its trash.
func TestGCPrunesReferrersIndex(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "gcref/prune:v1", ociImage(t, 4<<10, 1))
	subj := subjectDesc(t, ts, "gcref/prune:v1")
	sd := digest(subj.Digest.String())
	_, kept := ts.putArtifact(t, "gcref/prune", artifactManifest(t, "application/vnd.example.sig", &subj, "kept"))
	_, gone := ts.putArtifact(t, "gcref/prune", artifactManifest(t, "application/vnd.example.sig", &subj, "gone"))
	ts.deleteManifest(t, "gcref/prune", gone.String())
	entry := func(d digest) string { return osPath(ts.state.StorageDir(), referrerEntryPath("gcref/prune", sd, d)) }

	// A killed run's trash holding the kept referrer's entry.
	trashed := osPath(ts.state.StorageDir(), path.Join(trashRoot, "deadrun", strings.TrimPrefix(referrerEntryPath("gcref/prune", sd, kept), v2Root+"/")))
	if err := os.MkdirAll(filepath.Dir(trashed), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(entry(kept), trashed); err != nil {
		t.Fatal(err)
	}
	ts.age(t, old)
	ts.gc(t, GCOptions{Grace: time.Hour})
	if _, err := os.Stat(entry(gone)); !os.IsNotExist(err) {
		t.Errorf("the entry of a deleted referrer was not pruned: %v", err)
	}
	if _, err := os.Stat(entry(kept)); err != nil {
		t.Errorf("the entry of an existing referrer (left in a dead run's trash): %v", err)
	}
	if l, _ := ts.referrers(t, "gcref/prune", sd.String(), ""); len(l.Manifests) != 1 || l.Manifests[0].Digest != kept.String() {
		t.Errorf("referrers after gc: %v, want [%s]", digestsOf(l), kept)
	}
}
