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

// Authenticator verifies credentials against the identities in memory.
//
// On a data dir it asks the store on every call whether identities.json
// changed (kv.Files answers with one stat), so a revocation written by
// another process applies to the very next request. On a bucket a request
// must not cost an object-store round trip: Run polls the store every
// AuthPollInterval instead, and Verify only reads memory, except for a
// credential it does not know (a client that joined a moment ago), which
// makes it look at once, at most every missReload.
type Authenticator struct {
	store  *IdentityStore
	polled atomic.Bool // Run is keeping the copy fresh
	mu     sync.Mutex  // serialises reloads
	snap   atomic.Pointer[authSnapshot]

	lastMiss atomic.Int64 // unix nanos of the last reload for an unknown credential
}

// missReload is how often, at most, a credential the copy does not know
// makes a polled Authenticator check the store at once: a client that just
// joined through another replica (or this one) must not wait for the next
// poll, and a stream of bad credentials must not become a stream of
// object-store requests.
const missReload = 200 * time.Millisecond

type authSnapshot struct {
	ver kv.Version
	ids map[string]authEntry
}

type authEntry struct {
	hash    [32]byte
	role    Role
	revoked bool
}

// NewAuthenticator loads the store once and fails when it is unreadable.
func NewAuthenticator(store *IdentityStore) (*Authenticator, error) {
	a := &Authenticator{store: store}
	ctx, cancel := opCtx()
	defer cancel()
	if _, err := a.refresh(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// refresh reloads the identities if they changed since the snapshot.
func (a *Authenticator) refresh(ctx context.Context) (*authSnapshot, error) {
	// The common case, nothing changed, takes no lock.
	if s := a.snap.Load(); s != nil {
		if _, _, changed, err := a.store.kv.GetIfChanged(ctx, identitiesFile, s.ver); err == nil && !changed {
			return s, nil
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.snap.Load()
	var ver kv.Version
	if s != nil {
		ver = s.ver
	}
	b, nv, changed, err := a.store.kv.GetIfChanged(ctx, identitiesFile, ver)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("checking identities: %s does not exist (run edgecrd init)", a.store.where)
	}
	if err != nil {
		return nil, fmt.Errorf("checking identities %s: %w", a.store.where, err)
	}
	if !changed && s != nil {
		return s, nil
	}
	recs, err := parseRecords(a.store.where, b)
	if err != nil {
		return nil, err
	}
	s = &authSnapshot{ver: nv, ids: make(map[string]authEntry, len(recs.Identities))}
	for _, i := range recs.Identities {
		h, _ := decodeHash(i.SecretHash) // validated by parseRecords
		s.ids[i.ID] = authEntry{hash: h, role: i.Role, revoked: i.Revoked != nil}
	}
	a.snap.Store(s)
	return s, nil
}

// Run keeps the in-memory copy fresh by checking the store every interval
// until ctx ends; while it runs, Verify does no I/O. A failed check keeps
// the last copy (the store may be restarting) and is reported to onErr,
// which may be nil.
func (a *Authenticator) Run(ctx context.Context, every time.Duration, onErr func(error)) {
	a.polled.Store(true)
	defer a.polled.Store(false)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A check must end before the next is due, or a hung store would
		// stretch the staleness bound.
		cctx, cancel := context.WithTimeout(ctx, every)
		_, err := a.refresh(cctx)
		cancel()
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}
}

func (a *Authenticator) current() (*authSnapshot, error) {
	if s := a.snap.Load(); s != nil && a.polled.Load() {
		return s, nil
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
	s, err := a.current()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(secret))
	e, ok := s.ids[user]
	known := ok && subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1
	if !known && a.polled.Load() {
		// Maybe newer than the copy: look now, not at the next poll.
		now := time.Now().UnixNano()
		if last := a.lastMiss.Load(); now-last >= int64(missReload) && a.lastMiss.CompareAndSwap(last, now) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if fresh, err := a.refresh(ctx); err == nil {
				e, ok = fresh.ids[user]
			}
			cancel()
		}
	}
	if !ok {
		return "", ErrUnknownUser
	}
	if subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		return "", ErrBadSecret
	}
	if e.revoked {
		return "", ErrRevoked
	}
	return e.role, nil
}
