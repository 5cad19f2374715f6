package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

func TestGCItemKey(t *testing.T) {
	h := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	d := digest("sha256:" + h)
	for _, tc := range []struct{ path, want string }{
		{blobDataPath(d), "sha256/" + h},
		{blobDir(d), "sha256/" + h},
		{layerLinkDir("a/b", d) + "/link", "sha256/" + h},
		{revisionLinkDir("a/b", d), "sha256/" + h},
	} {
		if got := gcItemKey(tc.path); got != tc.want {
			t.Errorf("gcItemKey(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := gcItemKey("/docker/registry/v2/x/y.json"); len(got) != len("path/")+64 {
		t.Errorf("gcItemKey of a path without a digest = %q, want path/<sha256>", got)
	}
	if got, want := digestKey(d), "sha256/"+h; got != want {
		t.Errorf("digestKey = %q, want %q", got, want)
	}
}

// TestGCLeaseOnDir: the lease protocol on the directory store (the
// contract makes it the same on S3): one holder, an expired lease taken
// over, a renewal that lost its lease, a release.
func TestGCLeaseOnDir(t *testing.T) {
	store, err := kv.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	a, err := acquireGCLease(ctx, store, "a", "run-a", clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquireGCLease(ctx, store, "b", "run-b", clock); !errors.Is(err, ErrGCLeaseHeld) {
		t.Fatalf("second acquire: %v, want ErrGCLeaseHeld", err)
	}
	advance(gcLeaseTTL / 2)
	if err := a.renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	advance(gcLeaseTTL * 3 / 4) // past the first expiry, not the renewed one
	if _, err := acquireGCLease(ctx, store, "b", "run-b", clock); !errors.Is(err, ErrGCLeaseHeld) {
		t.Fatalf("acquire before the renewed expiry: %v, want ErrGCLeaseHeld", err)
	}
	advance(gcLeaseTTL) // a died: its lease expired
	if a.valid() == nil {
		t.Fatal("a's lease is still valid by its own clock after its expiry")
	}
	b, err := acquireGCLease(ctx, store, "b", "run-b", clock)
	if err != nil {
		t.Fatalf("acquire of an expired lease: %v", err)
	}
	if err := a.renew(ctx); err == nil {
		t.Fatal("a renewed a lease b took over")
	}
	if err := a.release(ctx); err != nil {
		t.Fatalf("release of a lost lease: %v", err)
	}
	if _, _, err := store.Get(ctx, gcLeaseKey); err != nil {
		t.Fatalf("a's release removed b's lease: %v", err)
	}

	// A replica sees b's run; its marker makes it wait, a dead run's does not.
	u := newSharedUse(store, time.Minute, clock)
	if err := u.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !u.mayCollect() {
		t.Fatal("a replica that saw the lease does not look for markers")
	}
	sh := &gcShared{store: store, lease: b, run: "run-b"}
	p := blobDataPath(digest("sha256:ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"))
	if err := sh.doom(ctx, p); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = u.waitDoom(wctx, gcItemKey(p))
	cancel()
	if err == nil {
		t.Fatal("waitDoom returned under a live run's marker")
	}
	if err := sh.undoom(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := u.waitDoom(ctx, gcItemKey(p)); err != nil {
		t.Fatalf("waitDoom after the marker went: %v", err)
	}
	if err := b.release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get(ctx, gcLeaseKey); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("lease after release: %v", err)
	}
	// The record is the collector's view of a use.
	if err := u.record(ctx, gcItemKey(p)); err != nil {
		t.Fatal(err)
	}
	if used, err := sh.usedSince(ctx, p, clock().Add(-time.Second)); err != nil || !used {
		t.Fatalf("usedSince after a record = %v, %v; want true", used, err)
	}
	if used, err := sh.usedSince(ctx, p, clock().Add(time.Second)); err != nil || used {
		t.Fatalf("usedSince with a later cutoff = %v, %v; want false", used, err)
	}
}
