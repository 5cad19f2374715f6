package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// gcCrashStore is a store for the GC crash tests, two hours old: app:keep
// (whole), an untagged manifest (its tag deleted) with its own blobs, and a
// blob no manifest references.
func gcCrashStore(t *testing.T) (r *crashRegistry, keep, untagged []byte) {
	t.Helper()
	r = newCrashRegistry(t, true)
	keep, untagged = r.image("app", "keep"), r.image("app", "untagged")
	for tag, m := range map[string][]byte{"keep": keep, "drop": untagged} {
		if code := r.putManifest("app", tag, m); code != http.StatusCreated {
			t.Fatalf("PUT %s: %d", tag, code)
		}
	}
	if code, _, _ := r.do("DELETE", "/v2/app/manifests/drop", nil, ""); code != http.StatusAccepted {
		t.Fatalf("DELETE drop: %d", code)
	}
	r.pushBlob("app", []byte("dangling"))
	then := time.Now().Add(-2 * time.Hour)
	err := filepath.Walk(r.root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, then, then)
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, keep, untagged
}

// gcWithFaults runs a collection whose storage dies after n writes.
func gcWithFaults(r *crashRegistry, o GCOptions) (*GCReport, error) {
	o.openDriver = func(root string) storagedriver.StorageDriver {
		// As CollectGarbage opens it: the plain filesystem driver.
		return &faultyDriver{StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), plan: r.plan}
	}
	return CollectGarbage(context.Background(), r.root, o)
}

// manifestsView checks every manifest the repository holds a revision of:
// each resolves by digest with all its blobs. It returns the digests.
func (r *crashRegistry) manifestsView(repo string) (map[string]bool, []string) {
	r.t.Helper()
	dir := osPath(r.root, revisionLinkDir(repo, "sha256:00")) // .../revisions/sha256/00
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil && !os.IsNotExist(err) {
		r.t.Fatal(err)
	}
	out := map[string]bool{}
	var bad []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), e.Name(), "link")); err != nil {
			continue
		}
		d := "sha256:" + e.Name()
		if _, probs := r.resolves(repo, d); len(probs) > 0 {
			bad = append(bad, probs...)
			continue
		}
		out[d] = true
	}
	return out, bad
}

// TestGCKilledAtAnyPoint: a collection that dies after any of its writes
// leaves nothing half-deleted: every listed tag resolves whole, every
// manifest the repository still holds resolves with all its blobs, the
// tagged image is untouched; after the repair on start (which puts the
// trash back) the same holds and the trash is empty, and the next
// collection finishes the work.
func TestGCKilledAtAnyPoint(t *testing.T) {
	o := GCOptions{Grace: time.Hour, DeleteUntagged: true}
	for n := 0; n < 200; n++ {
		r, keep, untagged := gcCrashStore(t)
		r.plan.arm(n)
		_, gcErr := gcWithFaults(r, o)
		killed, _ := r.plan.state()
		r.restart()
		check := func(when string) {
			t.Helper()
			tags, bad := r.clientView("app")
			_, mbad := r.manifestsView("app")
			bad = append(bad, mbad...)
			if tags["keep"] != sha(keep) {
				bad = append(bad, "app:keep resolves to "+tags["keep"])
			}
			for _, b := range bad {
				t.Errorf("killed after write %d, %s: %s", n, when, b)
			}
		}
		check("before the repair")
		if _, err := RepairStorage(context.Background(), r.root, RepairOptions{}); err != nil {
			t.Fatalf("killed after write %d: repair: %v", n, err)
		}
		check("after the repair")
		if _, err := os.Stat(osPath(r.root, trashRoot)); err == nil {
			if left, _ := os.ReadDir(osPath(r.root, trashRoot)); len(left) > 0 {
				t.Errorf("killed after write %d: the repair left the GC trash %v", n, left)
			}
		}
		if _, err := CollectGarbage(context.Background(), r.root, o); err != nil {
			t.Fatalf("killed after write %d: the next collection: %v", n, err)
		}
		check("after the next collection")
		if ms, _ := r.manifestsView("app"); ms[sha(untagged)] {
			t.Errorf("killed after write %d: the next collection left the untagged manifest", n)
		}
		if !killed {
			if gcErr != nil {
				t.Fatalf("collection without a crash: %v", gcErr)
			}
			t.Logf("a collection of this store makes %d writes; each was a crash point", n)
			return
		}
	}
	t.Fatal("the collection still crashed after 200 writes")
}

// TestGCKilledAfterTakingOutARetaggedManifest: a push tags the untagged
// manifest again just as the collector moves its revision link aside,
// and the collector dies before it re-checks. The tag does not resolve
// while the link sits in the trash; the repair on start puts it back, so
// the restarted server does not wait for the next collection to serve it.
func TestGCKilledAfterTakingOutARetaggedManifest(t *testing.T) {
	r, _, untagged := gcCrashStore(t)
	revision := revisionLinkDir("app", digest(sha(untagged)))
	o := GCOptions{Grace: time.Hour, DeleteUntagged: true, beforeRemove: func(p string) {
		if p != revision {
			return
		}
		if code := r.putManifest("app", "again", untagged); code != http.StatusCreated {
			t.Errorf("re-tagging: %d", code)
		}
		r.plan.arm(1) // the move aside, then death
	}}
	if _, err := gcWithFaults(r, o); err == nil {
		t.Fatal("the collection did not die")
	}
	r.restart()
	if _, bad := r.clientView("app"); len(bad) == 0 {
		t.Fatal("the tag resolved with its revision in the trash: the test does not reach the window")
	}
	if _, err := RepairStorage(context.Background(), r.root, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	tags, bad := r.clientView("app")
	if len(bad) > 0 || tags["again"] != sha(untagged) {
		t.Fatalf("after the repair: tags %v, problems %v", tags, bad)
	}
}

// TestServeRestoresTheTrashOfADeadGC: `edgecrd gc` dies with a re-tagged
// manifest aside while serve keeps running; serve puts it back within its
// watch interval, without a restart or another collection.
func TestServeRestoresTheTrashOfADeadGC(t *testing.T) {
	old := gcTrashWatchEvery
	gcTrashWatchEvery = 50 * time.Millisecond
	t.Cleanup(func() { gcTrashWatchEvery = old })
	dir := t.TempDir()
	if _, err := Ensure(dir, testOptions("test"), time.Now()); err != nil {
		t.Fatal(err)
	}
	ts := startServerAt(t, dir)
	for start := time.Now(); !strings.Contains(ts.logs.String(), "storage checked"); { // the repair on start is done
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the repair on start did not finish:\n%s", ts.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := newCrashRegistryAt(t, ts.state.StorageDir(), true)
	untagged := r.image("app", "untagged")
	if code := r.putManifest("app", "keep", r.image("app", "keep")); code != http.StatusCreated {
		t.Fatal(code)
	}
	if code := r.putManifest("app", "drop", untagged); code != http.StatusCreated {
		t.Fatal(code)
	}
	if code, _, _ := r.do("DELETE", "/v2/app/manifests/drop", nil, ""); code != http.StatusAccepted {
		t.Fatal(code)
	}
	then := time.Now().Add(-2 * time.Hour)
	filepath.Walk(r.root, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, then, then)
		}
		return nil
	})
	revision := revisionLinkDir("app", digest(sha(untagged)))
	o := GCOptions{Grace: time.Hour, DeleteUntagged: true, beforeRemove: func(p string) {
		if p == revision {
			r.putManifest("app", "again", untagged)
			r.plan.arm(1)
		}
	}}
	unlock, err := lockFile(ts.state.Path(gcLock)) // as `edgecrd gc` holds it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gcWithFaults(r, o); err == nil {
		t.Fatal("the collection did not die")
	}
	r.restart()
	if _, bad := r.clientView("app"); len(bad) == 0 {
		t.Fatal("the tag resolved with its revision in the trash: the test does not reach the window")
	}
	time.Sleep(300 * time.Millisecond)
	if _, bad := r.clientView("app"); len(bad) == 0 {
		t.Fatal("serve restored the trash while the collector's lock was held")
	}
	unlock() // the collector process is gone
	deadline := time.Now().Add(10 * time.Second)
	for {
		tags, bad := r.clientView("app")
		if len(bad) == 0 && tags["again"] == sha(untagged) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not restore the trash: tags %v, problems %v", tags, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The log line follows the restore: a view can see the tag first.
	for !strings.Contains(ts.logs.String(), "restored the trash of a garbage collection that died") {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("not logged:\n%s", ts.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
