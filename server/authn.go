package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Authentication failures. They are reported to clients as 401 and counted
// in metrics by kind; the message never holds the secret.
var (
	ErrUnknownUser = errors.New("unknown user")
	ErrBadSecret   = errors.New("wrong password")
	ErrRevoked     = errors.New("credential revoked")
)

// AuthPollInterval is how often replicas on a bucket look for changed
// identities (one conditional GET, answered 304 while nothing changed): a
// revocation made anywhere is refused everywhere within two intervals.
const AuthPollInterval = time.Second

// Authenticator verifies credentials against the identities in memory,
// kept per shard (identitystore.go).
//
// Changes others must see at once (revocations) bump
// identities/changes.json, which names the shards they touched. On a data
// dir the authenticator asks on every call whether that file changed
// (kv.Files answers with one stat), so a revocation written by another
// process applies to the very next request. On a bucket a request must not
// cost an object-store round trip: Run polls that one key every
// AuthPollInterval instead (a conditional GET, 304 while nothing changed:
// one request a second a replica, whatever the number of identities), and
// Verify only reads memory. A credential it does not know (a client that
// joined a moment ago, which bumps nothing) makes it read that credential's
// shard at once: always on a data dir (a stat), at most every missReload on
// a bucket.
type Authenticator struct {
	store  *IdentityStore
	polled atomic.Bool // Run is keeping the copy fresh
	mu     sync.Mutex  // serialises reloads of changes.json
	chVer  kv.Version  // under mu
	chSeq  int64       // under mu
	// seenVer is chVer once the shards it announces are loaded, for the
	// lock-free check.
	seenVer atomic.Pointer[kv.Version]
	shards  [shardCount]atomic.Pointer[authShard]
	shMu    [shardCount]sync.Mutex // serialise a shard's reloads

	lastMiss atomic.Int64 // unix nanos of the last reload for an unknown credential

	// checked is when the last successful check of the store began (unix
	// nanos): the copy holds every revocation written before it.
	checked atomic.Int64
	syncMu  sync.Mutex // one check on behalf of requests at a time
	// Under syncMu: when the last check on behalf of requests failed, and
	// its error, so that requests meanwhile are refused at once.
	syncFailed    time.Time
	syncFailedErr error
}

// RevocationBound is how long after a revocation is written a polled
// Authenticator (a replica on a bucket) may still accept the credential:
// Verify accepts only while the copy's last check began less than this
// long ago, and checks the store itself, or refuses with
// ErrIdentitiesUnchecked, when the poll fell behind (a slow or restarting
// store). README, "Auth".
const RevocationBound = 2 * time.Second

// ErrIdentitiesUnchecked: the store could not be checked for revocations
// within RevocationBound; the request is refused (503) rather than
// answered from a copy that may miss one.
var ErrIdentitiesUnchecked = errors.New("identities could not be checked for revocations")

// missReload is how often, at most, a credential the copy does not know
// makes a polled Authenticator check the store at once: a client that just
// joined through another replica (or this one) must not wait for the next
// poll, and a stream of bad credentials must not become a stream of
// object-store requests.
const missReload = 200 * time.Millisecond

// resyncEvery is how many polls pass between two conditional reads of
// every shard on a bucket: a safety net for a revocation whose writer died
// between its shard and changes.json (256 conditional GETs every 10
// minutes, 0.4 a second).
const resyncEvery = 600

type authShard struct {
	ver kv.Version
	ids map[string]authEntry
}

type authEntry struct {
	hash    [32]byte
	role    Role
	revoked bool
}

// NewAuthenticator loads the store once and fails when it is unreadable.
// It converts a store from before the identity shards.
func NewAuthenticator(store *IdentityStore) (*Authenticator, error) {
	a := &Authenticator{store: store}
	ctx, cancel := opCtx()
	defer cancel()
	if err := store.ensureLayout(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := a.loadAll(ctx); err != nil {
		return nil, err
	}
	a.checked.Store(start.UnixNano())
	return a, nil
}

// loadAll reads changes.json and then every shard that changed since the
// copy (all of them the first time).
func (a *Authenticator) loadAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ver, seq, err := a.readChanges(ctx)
	if err != nil {
		return err
	}
	if err := a.reloadShards(ctx, allShards()); err != nil {
		return err
	}
	a.commit(ver, seq)
	return nil
}

func (a *Authenticator) reloadShards(ctx context.Context, shards []int) error {
	errs := make(chan error, len(shards))
	sem := make(chan struct{}, readParallel)
	for _, n := range shards {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- a.reloadShard(ctx, n)
		}()
	}
	var first error
	for range shards {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// readChanges reads changes.json if it changed (under mu) and returns the
// shards changed since the last read and what to commit (a.commit) once
// they are loaded: a failed load is retried at the next look.
func (a *Authenticator) readChanges(ctx context.Context) ([]int, kv.Version, int64, error) {
	b, nv, changed, err := a.store.kv.GetIfChanged(ctx, changesKey, a.chVer)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, a.chVer, a.chSeq, nil // nothing was ever revoked
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("checking identities %s: %w", a.store.keyWhere(changesKey), err)
	}
	if !changed {
		return nil, a.chVer, a.chSeq, nil
	}
	c, err := parseChanges(a.store.keyWhere(changesKey), b)
	if err != nil {
		return nil, "", 0, err
	}
	var out []int
	for h, seq := range c.Shards {
		if n, ok := hexShard(h); ok && seq > a.chSeq {
			out = append(out, n)
		}
	}
	if c.Seq < a.chSeq {
		out = allShards() // the key was rewritten (a restore): look at everything
	}
	return out, nv, c.Seq, nil
}

// commit records (under mu) that the changes up to ver are loaded.
func (a *Authenticator) commit(ver kv.Version, seq int64) {
	a.chVer, a.chSeq = ver, seq
	a.seenVer.Store(&ver)
}

// reloadShard reads shard n if it changed since the copy.
func (a *Authenticator) reloadShard(ctx context.Context, n int) error {
	a.shMu[n].Lock()
	defer a.shMu[n].Unlock()
	cur := a.shards[n].Load()
	var ver kv.Version
	if cur != nil {
		ver = cur.ver
	}
	key := shardKey(n)
	b, nv, changed, err := a.store.kv.GetIfChanged(ctx, key, ver)
	if errors.Is(err, kv.ErrNotFound) {
		if cur == nil || cur.ver != "" {
			a.shards[n].Store(&authShard{})
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking identities %s: %w", a.store.keyWhere(key), err)
	}
	if !changed && cur != nil {
		return nil
	}
	ids, err := a.store.parseShard(n, b)
	if err != nil {
		return err
	}
	s := &authShard{ver: nv, ids: make(map[string]authEntry, len(ids))}
	for _, i := range ids {
		h, _ := decodeHash(i.SecretHash) // validated by parseShard
		s.ids[i.ID] = authEntry{hash: h, role: i.Role, revoked: i.Revoked != nil}
	}
	a.shards[n].Store(s)
	return nil
}

// refresh applies the changes announced since the last look.
func (a *Authenticator) refresh(ctx context.Context) error {
	// The common case, nothing changed, takes no lock: requests on a data
	// dir do not queue behind each other for their stat.
	if v := a.seenVer.Load(); v != nil {
		_, _, changed, err := a.store.kv.GetIfChanged(ctx, changesKey, *v)
		if err == nil && !changed || errors.Is(err, kv.ErrNotFound) && *v == "" {
			return nil
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	shards, ver, seq, err := a.readChanges(ctx)
	if err != nil {
		return err
	}
	if err := a.reloadShards(ctx, shards); err != nil {
		return err
	}
	a.commit(ver, seq)
	return nil
}

// authPollTimeout bounds one check for changed identities on a bucket.
const authPollTimeout = 10 * time.Second

// Run keeps the in-memory copy fresh by checking the store every interval
// until ctx ends; while it runs, Verify does no I/O. A failed check keeps
// the last copy (the store may be restarting) and is reported to onErr,
// which may be nil.
func (a *Authenticator) Run(ctx context.Context, every time.Duration, onErr func(error)) {
	a.polled.Store(true)
	defer a.polled.Store(false)
	t := time.NewTicker(every)
	defer t.Stop()
	for polls := 1; ; polls++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A check may take longer than a tick: cut at one tick, a store
		// answering in just over a second would never complete one and
		// revocations would wait forever. Ticks missed meanwhile are
		// dropped (time.Ticker), so checks never pile up.
		cctx, cancel := context.WithTimeout(ctx, authPollTimeout)
		err := a.refreshChecked(cctx)
		cancel()
		if err == nil && polls%resyncEvery == 0 {
			cctx, cancel := context.WithTimeout(ctx, 10*every)
			err = a.reloadShards(cctx, allShards())
			cancel()
		}
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}
}

// refreshChecked is refresh, and on success records when it began.
func (a *Authenticator) refreshChecked(ctx context.Context) error {
	start := time.Now()
	if err := a.refresh(ctx); err != nil {
		return err
	}
	for {
		old := a.checked.Load()
		if old >= start.UnixNano() || a.checked.CompareAndSwap(old, start.UnixNano()) {
			return nil
		}
	}
}

// checkedWithin reports whether the copy's last check began less than d ago.
func (a *Authenticator) checkedWithin(d time.Duration) bool {
	return time.Since(time.Unix(0, a.checked.Load())) < d
}

// syncCheckTimeout bounds the check a request makes when the poll fell
// behind (or storeOpTimeout, when shorter); the request waits for it.
// After a failed one, requests are refused at once for syncRetryEvery.
const (
	syncCheckTimeout = 2 * time.Second
	syncRetryEvery   = time.Second
)

// fresh makes the copy current for a request: while Run polls, nothing
// unless its last check began RevocationBound ago or more (then this
// request checks, one for all that wait); on a data dir one stat of
// changes.json (and the shard reads it announces).
func (a *Authenticator) fresh() error {
	if a.polled.Load() {
		if a.checkedWithin(RevocationBound) {
			return nil
		}
		a.syncMu.Lock()
		defer a.syncMu.Unlock()
		if a.checkedWithin(RevocationBound) {
			return nil // another request checked while this one waited
		}
		if time.Since(a.syncFailed) < syncRetryEvery {
			return a.syncFailedErr
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(syncCheckTimeout, storeOpTimeout))
		defer cancel()
		last := time.Unix(0, a.checked.Load())
		if err := a.refreshChecked(ctx); err != nil {
			a.syncFailed = time.Now()
			a.syncFailedErr = fmt.Errorf("%w since %s: %v", ErrIdentitiesUnchecked, last.UTC().Format(time.RFC3339), err)
			return a.syncFailedErr
		}
		return nil
	}
	if _, local := a.store.kv.(*kv.Files); local {
		// A stat, per request: no deadline (and its timer) needed.
		return a.refresh(context.Background())
	}
	ctx, cancel := opCtx()
	defer cancel()
	return a.refresh(ctx)
}

// Verify checks user and secret and returns the identity's role.
func (a *Authenticator) Verify(user, secret string) (Role, error) {
	polled := a.polled.Load()
	if !polled {
		if err := a.fresh(); err != nil {
			return "", err
		}
	}
	n := shardOf(user)
	sum := sha256.Sum256([]byte(secret))
	var e authEntry
	ok := false
	if s := a.shards[n].Load(); s != nil {
		e, ok = s.ids[user]
	}
	known := ok && subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1
	if !known {
		// Maybe newer than the copy (a join): look at its shard now.
		look := true
		if polled {
			now := time.Now().UnixNano()
			last := a.lastMiss.Load()
			look = now-last >= int64(missReload) && a.lastMiss.CompareAndSwap(last, now)
		}
		if look {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := a.reloadShard(ctx, n); err == nil {
				if s := a.shards[n].Load(); s != nil {
					e, ok = s.ids[user]
				}
			}
			cancel()
		}
	}
	if err := verdict(e, ok, sum); err != nil {
		return "", err
	}
	if polled && !a.checkedWithin(RevocationBound) {
		// About to accept from a copy whose last check is older than the
		// bound: check first (a refusal above needs no check, a
		// revocation is for good).
		if err := a.fresh(); err != nil {
			return "", err
		}
		e, ok = authEntry{}, false
		if s := a.shards[n].Load(); s != nil {
			e, ok = s.ids[user]
		}
		if err := verdict(e, ok, sum); err != nil {
			return "", err
		}
	}
	return e.role, nil
}

// verdict is Verify's answer for entry e (ok: the user is known) and the
// SHA-256 of the secret given.
func verdict(e authEntry, ok bool, sum [32]byte) error {
	if !ok {
		return ErrUnknownUser
	}
	if subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		return ErrBadSecret
	}
	if e.revoked {
		return ErrRevoked
	}
	return nil
}
