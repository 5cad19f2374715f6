package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Garbage collection on a bucket, with replicas taking pushes meanwhile.
//
// On local disk the collector and the server agree through file mtimes
// and a rename into a trash (gc.go). On a bucket neither works: an
// object's LastModified cannot be refreshed without rewriting it, and a
// "move" is a copy. What replaces them lives in the shared state store,
// whose writes are linearizable (conditional PUTs on one key):
//
//   - Lease (gc/lease): one collector at a time across replicas and
//     `edgecrd gc`. Taken create-only, or by compare-and-swap once it has
//     expired (a killed collector blocks GC for one lease period, no
//     more); renewed every gcLeaseTTL/3 while running; released at the end.
//     A collector that cannot renew before its expiry stops.
//   - Use records (gc/used/<alg>/<hex>): the mtime touch. Before a replica
//     tells a client that a blob or manifest exists, or links it into a
//     new manifest, it records the use, at most once per TouchInterval per
//     digest (so a record is never older than that interval behind the
//     last use). The collector treats content as young when its object or
//     its use record is younger than the grace period.
//   - Doom markers (gc/doomed/<alg>/<hex>): the trash. The collector
//     writes the marker, then reads the use record, then deletes the item
//     and the marker (or, when the record is young, only the marker). A
//     replica records the use, then looks for a marker; if there is one,
//     it waits until the marker is gone (the collector decided) before it
//     answers. Of two such sequences on one digest, one sees the other's
//     write: either the collector sees the fresh use and keeps the item,
//     or the replica sees the marker and waits; after the wait the
//     registry answers from what is really there. This is the trash's
//     re-check without the move.
//   - Notice: replicas look for markers only while a lease may be held:
//     they poll gc/lease every gcLeasePoll (a conditional GET, 304 while
//     nothing changes) and look for markers whenever their last
//     successful poll is older than gcLeaseStale or saw a lease. The
//     collector writes its first marker gcNotice after taking the lease,
//     longer than gcLeaseStale, so every replica looks by then.
//
// A marker whose run no longer holds the lease (its collector died) is
// ignored by replicas and removed by the next run.

const (
	gcLeaseKey   = "gc/lease"
	gcUsedPrefix = "gc/used/"
	gcDoomPrefix = "gc/doomed/"
)

// Lease and notice timings (variables: tests shorten them).
var (
	gcLeaseTTL   = 30 * time.Second
	gcLeasePoll  = time.Second
	gcLeaseStale = 2 * time.Second
	gcNotice     = 3 * time.Second
	// gcDoomWait bounds how long a request waits for the collector to
	// decide on one digest (it decides in a few store round trips).
	gcDoomWait = 30 * time.Second
)

// errGCDeciding: a request waited gcDoomWait for the collector to decide
// on content it uses; the store is not the cause.
var errGCDeciding = errors.New("garbage collection is still deciding on content this request uses")

// ErrGCLeaseHeld: another collector holds the lease.
var ErrGCLeaseHeld = errors.New("another garbage collection is running")

// gcLease is the value of gc/lease.
type gcLease struct {
	Holder  string    `json:"holder"`
	Run     string    `json:"run"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"`
}

// gcLeaseHandle is a lease this process holds.
type gcLeaseHandle struct {
	store kv.Store
	key   string // gcLeaseKey, or another lease's key (syncLeaseKey)
	now   func() time.Time

	mu    sync.Mutex
	lease gcLease
	ver   kv.Version
	lost  error
}

// acquireGCLease takes gc/lease for a run of holder, or returns
// ErrGCLeaseHeld naming who has it and until when.
func acquireGCLease(ctx context.Context, store kv.Store, holder, run string, now func() time.Time) (*gcLeaseHandle, error) {
	return acquireLease(ctx, store, gcLeaseKey, ErrGCLeaseHeld, holder, run, now)
}

// acquireLease takes the lease at key (gc/lease, sync/lease) for a run of
// holder, or returns held (ErrGCLeaseHeld, ErrSyncRunning) naming who has
// it and until when.
func acquireLease(ctx context.Context, store kv.Store, key string, held error, holder, run string, now func() time.Time) (*gcLeaseHandle, error) {
	for range 5 {
		t := now()
		l := gcLease{Holder: holder, Run: run, Started: t.UTC(), Expires: t.Add(gcLeaseTTL).UTC()}
		val, _ := json.Marshal(l)
		cur, ver, err := store.Get(ctx, key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			ver = ""
		case err != nil:
			return nil, fmt.Errorf("reading the lease %s: %w", key, err)
		default:
			var old gcLease
			if json.Unmarshal(cur, &old) == nil && t.Before(old.Expires) {
				return nil, fmt.Errorf("%w: %s holds the lease %s (run %s) until %s", held, old.Holder, key, old.Run, old.Expires.Format(time.RFC3339))
			}
			// Expired (or unreadable): its collector died; take it over.
		}
		nv, err := store.Put(ctx, key, val, ver)
		if errors.Is(err, kv.ErrConflict) {
			continue // someone else moved first: look again
		}
		if err != nil {
			return nil, fmt.Errorf("taking the lease %s: %w", key, err)
		}
		return &gcLeaseHandle{store: store, key: key, now: now, lease: l, ver: nv}, nil
	}
	return nil, fmt.Errorf("%w: the lease %s kept changing", held, key)
}

// renew extends the lease by gcLeaseTTL.
func (h *gcLeaseHandle) renew(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	l := h.lease
	l.Expires = h.now().Add(gcLeaseTTL).UTC()
	val, _ := json.Marshal(l)
	nv, err := h.store.Put(ctx, h.key, val, h.ver)
	if errors.Is(err, kv.ErrConflict) {
		h.lost = fmt.Errorf("lease %s of run %s taken over by another holder", h.key, l.Run)
		return h.lost
	}
	if err != nil {
		if !h.now().Before(h.lease.Expires) {
			h.lost = fmt.Errorf("lease %s of run %s expired: renewing: %w", h.key, l.Run, err)
			return h.lost
		}
		return err // try again at the next tick
	}
	h.lease, h.ver = l, nv
	return nil
}

// valid reports whether the lease is held for sure now: renewed and not
// yet expired by this process's clock.
func (h *gcLeaseHandle) valid() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	if !h.now().Before(h.lease.Expires) {
		return fmt.Errorf("lease %s of run %s expired", h.key, h.lease.Run)
	}
	return nil
}

// keep renews the lease until ctx ends; when it is lost it cancels the
// run. A renewal starts once a third of the TTL has passed since the
// expiry last confirmed was set (at once when the last one took longer),
// may take until that expiry, and one that failed is tried again after
// gcLeaseTTL/30. So a store that answers late, up to about half the TTL
// (15 s), keeps the lease: a 2,000-tag collection on a MinIO slowed down
// by load lost it when a renewal had to answer within gcLeaseTTL/3 and
// the next waited for a tick (issue 14). What the collector may do is
// unchanged: it removes only while its last confirmed expiry is ahead of
// its clock (valid), and a renewal answered after that does not count.
func (h *gcLeaseHandle) keep(ctx context.Context, cancel context.CancelCauseFunc) {
	for {
		wait := h.expires().Sub(h.now()) - 2*gcLeaseTTL/3
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		rctx, rc := context.WithDeadline(ctx, h.expires())
		err := h.renew(rctx)
		rc()
		if h.valid() != nil {
			cancel(errors.Join(h.valid(), err))
			return
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(gcLeaseTTL / 30):
			}
		}
	}
}

// expires is the expiry of the lease as last confirmed by the store.
func (h *gcLeaseHandle) expires() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease.Expires
}

// release gives the lease up (a no-op when it was lost).
func (h *gcLeaseHandle) release(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return nil
	}
	err := h.store.Delete(ctx, h.key, h.ver)
	if errors.Is(err, kv.ErrConflict) {
		return nil
	}
	return err
}

// gcMark is a use record or a doom marker.
type gcMark struct {
	At  time.Time `json:"at"`
	Run string    `json:"run,omitempty"`
}

var pathDigestRE = regexp.MustCompile(`(sha256|sha512)/(?:[a-f0-9]{2}/)?([a-f0-9]{64}|[a-f0-9]{128})(?:/|$)`)

// gcItemKey is the digest part of the use and doom keys for a driver path
// (blob data, a revision or layer link: the digest in it), or a hash of
// the path for items without one.
func gcItemKey(p string) string {
	if m := pathDigestRE.FindAllStringSubmatch(p, -1); len(m) > 0 {
		last := m[len(m)-1]
		return last[1] + "/" + last[2]
	}
	sum := sha256.Sum256([]byte(p))
	return "path/" + hex.EncodeToString(sum[:])
}

func digestKey(d digest) string { return d.Algorithm() + "/" + d.Encoded() }

// sharedUse is a replica's side: it records uses and waits on markers.
type sharedUse struct {
	store kv.Store
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	recorded map[string]usedAt // digest key -> last record this process wrote

	leaseMu  sync.Mutex
	lease    *gcLease // nil: none
	leaseVer kv.Version
	polled   time.Time // last successful poll
}

type usedAt struct {
	at  time.Time
	ver kv.Version
}

func newSharedUse(store kv.Store, every time.Duration, now func() time.Time) *sharedUse {
	return &sharedUse{store: store, every: every, now: now, recorded: map[string]usedAt{}}
}

// use records a use of the content with digest key k, then waits while
// a collector is deciding on it.
func (u *sharedUse) use(ctx context.Context, k string) error {
	rctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	if err := u.record(rctx, k); err != nil {
		return err
	}
	if !u.mayCollect() {
		return nil
	}
	return u.waitDoom(ctx, k)
}

// record writes gc/used/<k> unless this process did within every.
func (u *sharedUse) record(ctx context.Context, k string) error {
	now := u.now()
	u.mu.Lock()
	r, ok := u.recorded[k]
	u.mu.Unlock()
	if ok && now.Sub(r.at) < u.every {
		return nil
	}
	val, _ := json.Marshal(gcMark{At: now.UTC()})
	key := gcUsedPrefix + k
	ver := r.ver
	for range 4 {
		nv, err := u.store.Put(ctx, key, val, ver)
		if err == nil {
			u.mu.Lock()
			if len(u.recorded) > 200000 { // forget the lot rather than grow without bound
				clear(u.recorded)
			}
			u.recorded[k] = usedAt{at: now, ver: nv}
			u.mu.Unlock()
			return nil
		}
		if !errors.Is(err, kv.ErrConflict) {
			return fmt.Errorf("recording the use of %s for garbage collection: %w", k, err)
		}
		_, ver, err = u.store.Get(ctx, key)
		if errors.Is(err, kv.ErrNotFound) {
			ver = ""
		} else if err != nil {
			return fmt.Errorf("recording the use of %s for garbage collection: %w", k, err)
		}
	}
	return fmt.Errorf("recording the use of %s for garbage collection: the record kept changing", k)
}

// mayCollect reports whether a collector may be deciding now: a lease is
// held, or this process has not seen the lease recently enough to know.
func (u *sharedUse) mayCollect() bool {
	u.leaseMu.Lock()
	defer u.leaseMu.Unlock()
	return u.lease != nil || u.now().Sub(u.polled) >= gcLeaseStale
}

// currentRun is the run holding the lease, fresh from the store.
func (u *sharedUse) currentRun(ctx context.Context) (string, error) {
	if err := u.poll(ctx); err != nil {
		return "", err
	}
	u.leaseMu.Lock()
	defer u.leaseMu.Unlock()
	if u.lease == nil || !u.now().Before(u.lease.Expires) {
		return "", nil
	}
	return u.lease.Run, nil
}

// waitDoom waits until no live collector has a marker on k.
func (u *sharedUse) waitDoom(ctx context.Context, k string) error {
	ctx, cancel := context.WithTimeout(ctx, gcDoomWait)
	defer cancel()
	for {
		b, _, err := u.store.Get(ctx, gcDoomPrefix+k)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("checking garbage collection of %s: %w", k, err)
		}
		var m gcMark
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		run, err := u.currentRun(ctx)
		if err != nil {
			return fmt.Errorf("checking garbage collection of %s: %w", k, err)
		}
		if run != m.Run {
			return nil // the marker of a collector that died
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s, after %s", errGCDeciding, k, gcDoomWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// poll reads gc/lease (a 304 while it is unchanged).
func (u *sharedUse) poll(ctx context.Context) error {
	// What the answer says held when the request was sent, no later: a
	// late answer must not make "no collector" look younger than it is.
	asked := u.now()
	u.leaseMu.Lock()
	ver := u.leaseVer
	u.leaseMu.Unlock()
	val, nv, changed, err := u.store.GetIfChanged(ctx, gcLeaseKey, ver)
	if errors.Is(err, kv.ErrNotFound) {
		val, nv, changed, err = nil, "", true, nil
	}
	if err != nil {
		return fmt.Errorf("reading the garbage collection lease: %w", err)
	}
	u.leaseMu.Lock()
	defer u.leaseMu.Unlock()
	if changed {
		u.leaseVer = nv
		u.lease = nil
		if val != nil {
			var l gcLease
			if json.Unmarshal(val, &l) == nil {
				u.lease = &l
			}
		}
	}
	if u.lease != nil && !u.now().Before(u.lease.Expires) {
		// Expired: no collector is deciding (the next one takes it over
		// and waits gcNotice before its first marker).
		u.lease = nil
		u.leaseVer = nv
	}
	u.polled = asked
	return nil
}

// watch polls the lease every gcLeasePoll until ctx ends.
func (u *sharedUse) watch(ctx context.Context) {
	t := time.NewTicker(gcLeasePoll)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a late answer still counts
		_ = u.poll(pctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gcShared is the collector's side on a bucket.
type gcShared struct {
	store kv.Store
	lease *gcLeaseHandle
	run   string
}

// doom writes the marker on the item at p.
func (g *gcShared) doom(ctx context.Context, p string) error {
	if err := g.lease.valid(); err != nil {
		return err
	}
	val, _ := json.Marshal(gcMark{At: time.Now().UTC(), Run: g.run})
	key := gcDoomPrefix + gcItemKey(p)
	_, err := g.store.Put(ctx, key, val, "")
	if errors.Is(err, kv.ErrConflict) { // a dead run's marker: replace it
		_, ver, gerr := g.store.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("marking %s for removal: %w", p, gerr)
		}
		_, err = g.store.Put(ctx, key, val, ver)
	}
	if err != nil {
		return fmt.Errorf("marking %s for removal: %w", p, err)
	}
	return nil
}

// undoom removes the marker on the item at p.
func (g *gcShared) undoom(ctx context.Context, p string) error {
	if err := g.store.Delete(ctx, gcDoomPrefix+gcItemKey(p), ""); err != nil {
		return fmt.Errorf("unmarking %s: %w", p, err)
	}
	return nil
}

// usedSince reports whether a replica recorded a use of the item at p at
// or after cutoff.
func (g *gcShared) usedSince(ctx context.Context, p string, cutoff time.Time) (bool, error) {
	b, _, err := g.store.Get(ctx, gcUsedPrefix+gcItemKey(p))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the last use of %s: %w", p, err)
	}
	var m gcMark
	if err := json.Unmarshal(b, &m); err != nil {
		return true, nil // unreadable: keep
	}
	return !m.At.Before(cutoff), nil
}

// forget removes the use record of a removed blob.
func (g *gcShared) forget(ctx context.Context, d digest) {
	_ = g.store.Delete(ctx, gcUsedPrefix+digestKey(d), "")
}

// clearStale removes the markers of runs that died.
func (g *gcShared) clearStale(ctx context.Context) (int, error) {
	n := 0
	after := ""
	for {
		keys, err := g.store.List(ctx, gcDoomPrefix, after, 1000)
		if err != nil {
			return n, fmt.Errorf("listing garbage collection markers: %w", err)
		}
		for _, k := range keys {
			b, ver, err := g.store.Get(ctx, k)
			if err != nil {
				continue
			}
			var m gcMark
			if json.Unmarshal(b, &m) == nil && m.Run == g.run {
				continue
			}
			if g.store.Delete(ctx, k, ver) == nil {
				n++
			}
		}
		if len(keys) < 1000 {
			return n, nil
		}
		after = keys[len(keys)-1]
	}
}

// CollectGarbageS3 runs one collection on the images in the bucket loc,
// under the lease in store (gc/lease): it fails with ErrGCLeaseHeld while
// another collector (a replica's schedule, another `edgecrd gc`) runs.
// It is what `edgecrd gc --storage s3://…` runs, and serve's schedule on a
// bucket. The summary of a run that was not a dry run is kept in store
// under gc/last.
func CollectGarbageS3(ctx context.Context, loc *kv.S3Location, store kv.Store, o GCOptions) (*GCReport, error) {
	st, err := s3ImageStorage(ctx, loc, store, o.Logger, nil)
	if err != nil {
		return nil, err
	}
	return collectGarbageShared(ctx, st, gcHolder(), o)
}

// gcHolder names this process in the lease: host and process id.
func gcHolder() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", h, os.Getpid())
}

const gcLastKey = "gc/last"

func collectGarbageShared(ctx context.Context, st *imageStorage, holder string, o GCOptions) (*GCReport, error) {
	o, id, err := o.prepare()
	if err != nil {
		return nil, err
	}
	lease, err := acquireGCLease(ctx, st.store, holder, id, time.Now)
	if err != nil {
		return nil, err
	}
	o.Logger.Info("gc: lease taken", "run", id, "holder", holder, "expires", lease.lease.Expires)
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go lease.keep(rctx, cancel)
	defer func() {
		cctx, cc := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cc()
		if err := lease.release(cctx); err != nil {
			o.Logger.Warn("gc: releasing the lease (it expires by itself)", "run", id, "err", err)
		}
	}()
	// Replicas look for markers once they have seen the lease.
	select {
	case <-rctx.Done():
		return nil, fmt.Errorf("garbage collection: %w", context.Cause(rctx))
	case <-time.After(gcNotice):
	}
	// The s3 driver without durableFS: the collector removes links itself,
	// in its own order, and lists flat.
	rep, err := runCollector(rctx, st.flat, &gcShared{store: st.store, lease: lease, run: id}, id, o)
	if cause := context.Cause(rctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("garbage collection stopped: %w", cause)
	}
	if rep != nil && !rep.DryRun && (err == nil || errors.Is(err, ErrGCIncomplete)) {
		if werr := putLastGC(ctx, st.store, &rep.GCSummary); werr != nil {
			return rep, errors.Join(err, werr)
		}
	}
	return rep, err
}

// putLastGC records sum under gc/last.
func putLastGC(ctx context.Context, store kv.Store, sum *GCSummary) error {
	val, _ := json.MarshalIndent(sum, "", "  ")
	for range 5 {
		_, ver, err := store.Get(ctx, gcLastKey)
		if errors.Is(err, kv.ErrNotFound) {
			ver = ""
		} else if err != nil {
			return fmt.Errorf("recording the collection: %w", err)
		}
		if _, err = store.Put(ctx, gcLastKey, val, ver); !errors.Is(err, kv.ErrConflict) {
			if err != nil {
				return fmt.Errorf("recording the collection: %w", err)
			}
			return nil
		}
	}
	return errors.New("recording the collection: gc/last kept changing")
}

// lastGCShared is the summary under gc/last, nil when none.
func lastGCShared(ctx context.Context, store kv.Store) (*GCSummary, error) {
	b, _, err := store.Get(ctx, gcLastKey)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the last collection: %w", err)
	}
	var sum GCSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("reading the last collection: corrupt %s: %w", gcLastKey, err)
	}
	return &sum, nil
}
