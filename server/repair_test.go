package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// brokenByOldWrites builds, on the plain filesystem driver (edgecrd before
// issue 18), the state a crash after write n of sc left, plus a whole tag
// other:stable. It reports whether the crash point was inside the
// operation.
func brokenByOldWrites(t *testing.T, r *crashRegistry, sc crashScenario, n int) bool {
	t.Helper()
	if code := r.putManifest("other", "stable", r.image("other", "stable")); code != http.StatusCreated {
		t.Fatalf("PUT other:stable: %d", code)
	}
	r.manifest = r.image("app", "new")
	sc.setup(r)
	r.plan.arm(n)
	sc.op(r)
	killed, _ := r.plan.state()
	r.restart()
	return killed
}

// TestRepairRemovesWhatOldWritesLeft: after a crash at any point of a tag
// PUT or a DELETE by digest on the old driver, the repair leaves only tags
// that resolve, each removal reported, and the whole tag untouched.
func TestRepairRemovesWhatOldWritesLeft(t *testing.T) {
	broken := 0
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			for n := 0; n < 100; n++ {
				r := newCrashRegistry(t, false)
				killed := brokenByOldWrites(t, r, sc, n)
				_, before := r.clientView("app")
				rep, err := RepairStorage(context.Background(), r.root, RepairOptions{})
				if err != nil {
					t.Fatalf("crash point %d: repair: %v", n, err)
				}
				r.restart()
				if _, bad := r.clientView("app"); len(bad) > 0 {
					t.Errorf("crash point %d: after the repair: %v", n, bad)
				}
				if len(before) > len(rep.Removed) {
					t.Errorf("crash point %d: %d tags did not resolve, the repair reports %d removed", n, len(before), len(rep.Removed))
				}
				broken += len(rep.Removed)
				if d, bad := r.resolves("other", "stable"); d == "" || len(bad) > 0 {
					t.Errorf("crash point %d: the whole tag other:stable was harmed: %v", n, bad)
				}
				if !killed {
					return
				}
			}
		})
	}
	if broken == 0 {
		t.Fatal("no crash point left anything to repair: the test does not exercise the repair")
	}
}

// TestRepairBlobMissing: a tag whose layer is gone, or no longer linked
// into the repository, is removed with its reason; other tags stay.
func TestRepairBlobMissing(t *testing.T) {
	r := newCrashRegistry(t, true)
	for _, tag := range []string{"gone", "unlinked", "whole"} {
		if code := r.putManifest("app", tag, r.image("app", tag)); code != http.StatusCreated {
			t.Fatalf("PUT: %d", code)
		}
	}
	layerOf := func(seed string) digest {
		return digest(sha([]byte("layer of " + seed)))
	}
	if err := os.Remove(osPath(r.root, blobDataPath(layerOf("gone")))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(osPath(r.root, layerLinkDir("app", layerOf("unlinked")))); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	rep, err := RepairStorage(context.Background(), r.root, RepairOptions{Repaired: func(reason string) { reasons = append(reasons, reason) }})
	if err != nil {
		t.Fatal(err)
	}
	tags, bad := r.clientView("app")
	if len(bad) > 0 || len(tags) != 1 || tags["whole"] == "" {
		t.Fatalf("after the repair: tags %v, problems %v", tags, bad)
	}
	if rep.TagsChecked != 3 || len(rep.Removed) != 2 || strings.Join(reasons, ",") != "blob_missing,blob_missing" {
		t.Fatalf("report %+v, reasons %v", rep, reasons)
	}
	for _, rt := range rep.Removed {
		if rt.Digest == "" || !strings.Contains(rt.Detail, "blob") {
			t.Errorf("removed %+v: want the digest and the missing blob named", rt)
		}
	}
}

// TestRepairLeavesNewWritesAlone: a broken tag written after the repair
// started is not touched, and a tag re-pushed between the check and the
// removal is put back, resolving to what the push wrote.
func TestRepairLeavesNewWritesAlone(t *testing.T) {
	r := newCrashRegistry(t, true)
	m := r.image("app", "one")
	for _, tag := range []string{"a", "b"} {
		if code := r.putManifest("app", tag, m); code != http.StatusCreated {
			t.Fatalf("PUT: %d", code)
		}
	}
	// Both tags lose their manifest as a pre-issue-18 DELETE by digest
	// that died before it untagged left them.
	if err := os.RemoveAll(osPath(r.root, revisionLinkDir("app", digest(sha(m))))); err != nil {
		t.Fatal(err)
	}
	rep, err := RepairStorage(context.Background(), r.root, RepairOptions{Before: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 0 || rep.Skipped != 2 {
		t.Fatalf("tags newer than the repair's start: %+v", rep)
	}
	time.Sleep(10 * time.Millisecond) // mtimes of the re-push after Before
	before := time.Now()
	time.Sleep(10 * time.Millisecond)
	m2 := r.image("app", "two")
	rep, err = RepairStorage(context.Background(), r.root, RepairOptions{
		Before: before,
		beforeTakeOut: func(repo, tag string) {
			if tag == "a" {
				if code := r.putManifest("app", "a", m2); code != http.StatusCreated {
					t.Errorf("re-push during the repair: %d", code)
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tags, bad := r.clientView("app")
	if len(bad) > 0 || len(tags) != 1 || tags["a"] != sha(m2) {
		t.Fatalf("after the repair: tags %v, problems %v", tags, bad)
	}
	if len(rep.Removed) != 1 || rep.Removed[0].Tag != "b" || rep.Removed[0].Reason != repairManifestMissing || rep.Skipped != 1 {
		t.Fatalf("report %+v", rep)
	}
}

// TestServeRepairsOnStart: serve repairs in the background on start,
// logs it and counts it in edgecr_tag_repairs_total.
func TestServeRepairsOnStart(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("test"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	root := st.StorageDir()
	r := newCrashRegistryAt(t, root, false)
	r.manifest = r.image("app", "one")
	crashScenarios[2].setup(r) // tags v1 and latest
	r.plan.arm(1)              // DELETE by digest dies after the revision link
	crashScenarios[2].op(r)
	r.restart()
	if _, bad := r.clientView("app"); len(bad) == 0 {
		t.Fatal("the old driver left nothing broken")
	}
	ts2 := startServerAt(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := ts2.do("GET", "/metrics", "", "", nil, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `edgecr_tag_repairs_total{reason="manifest_missing"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no repair counted:\n%s", grepLines(string(b), "edgecr_tag_repairs"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(ts2.logs.String(), "removed a tag that could not be pulled") {
		t.Errorf("repair not logged:\n%s", ts2.logs.String())
	}
	resp := ts2.do("GET", "/v2/app/tags/list", "admin", ts2.adminPW, nil, nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "v1") || strings.Contains(string(b), "latest") {
		t.Fatalf("tags/list after the repair: %d %s", resp.StatusCode, b)
	}
}

// startServerAt serves an existing data dir, as a restarted edgecrd does.
func startServerAt(t *testing.T, dir string) *testServer {
	t.Helper()
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
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
