package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Quota across replicas on one bucket.
//
// Each replica counts usage as on one node (quota.go): a walk of the
// bucket (object sizes) at start, periodically and before a refusal, plus
// what it writes in between. What the other replicas write in between is
// shared through the state store, one key per replica:
//
//	quota/replicas/<id>: {"committed": C, "granted": G, "updated": T}
//
// C is the net bytes the replica has counted as written since it started
// (never reset), G what it may still write: bytes reserved by requests in
// flight plus the unused rest of its grants. A replica reserves space in
// grants of quotaGrant bytes (or exactly what a request needs, when a
// whole grant does not fit): it first publishes G+grant on its own key,
// then reads every other replica's key, and keeps the grant only if
//
//	its walk + its writes since + its G + Σ others (C + G − C at its walk) ≤ quota
//
// (C at its walk: the others' C read just before its walk started, since
// what they committed before that is in the walk). Two replicas granting at
// once each publish before they read, so at least one of them sees the
// other's grant (the store is linearizable): concurrent pushes through
// several replicas cannot together pass the quota with blob or manifest
// bytes. What is not granted ahead, and so can pass it, is the small
// metadata a request writes besides its body (links, hash states: a few
// hundred bytes per request), published within quotaFlush: the bound is
// that, per replica, per quotaFlush. Everything else errs high (a C
// published late raises the others' estimate; a dead replica's grant is
// counted until its key is quotaStale old), and a refusal walks the
// bucket again first, as on one node.
//
// The cost is one PUT, one LIST and a GET per other replica per grant
// (64 MiB), and nothing at all without a quota.

const quotaPrefix = "quota/replicas/"

// Timings and sizes (variables: tests change them).
var (
	quotaGrant = int64(64 << 20)
	quotaFlush = time.Second
	// quotaStale: a replica key not updated for that long is a dead
	// replica's: its grant is not counted, and after quotaForget the key
	// is removed.
	quotaStale  = 2 * time.Minute
	quotaForget = time.Hour
)

// quotaShare is the value of a replica's key.
type quotaShare struct {
	Committed int64     `json:"committed"`
	Granted   int64     `json:"granted"`
	Updated   time.Time `json:"updated"`
}

// sharedQuota is a replica's side of the shared quota.
type sharedQuota struct {
	store kv.Store
	id    string
	now   func() time.Time
	log   *slog.Logger

	grantMu sync.Mutex // one grant at a time in this process
	pubMu   sync.Mutex
	ver     kv.Version
	last    quotaShare // as published

	mu     sync.Mutex
	snap   map[string]int64 // others' Committed just before the last walk
	others int64            // the others' share at the last read
}

func newSharedQuota(store kv.Store, now func() time.Time, log *slog.Logger) *sharedQuota {
	b := make([]byte, 8)
	rand.Read(b)
	return &sharedQuota{store: store, id: hex.EncodeToString(b), now: now, log: log, snap: map[string]int64{}}
}

func (q *sharedQuota) key() string { return quotaPrefix + q.id }

// publish writes this replica's share (skipped when unchanged and recent).
func (q *sharedQuota) publish(ctx context.Context, committed, granted int64, force bool) error {
	q.pubMu.Lock()
	defer q.pubMu.Unlock()
	now := q.now()
	if !force && q.ver != "" && q.last.Committed == committed && q.last.Granted == granted && now.Sub(q.last.Updated) < quotaStale/4 {
		return nil
	}
	s := quotaShare{Committed: committed, Granted: granted, Updated: now.UTC()}
	val, _ := json.Marshal(s)
	ver := q.ver
	for range 3 {
		nv, err := q.store.Put(ctx, q.key(), val, ver)
		if err == nil {
			q.ver, q.last = nv, s
			return nil
		}
		if !errors.Is(err, kv.ErrConflict) {
			return fmt.Errorf("publishing this replica's storage use: %w", err)
		}
		// Only this process writes the key; a conflict is a lost answer
		// to an earlier write or a key removed as stale.
		_, ver, err = q.store.Get(ctx, q.key())
		if errors.Is(err, kv.ErrNotFound) {
			ver = ""
		} else if err != nil {
			return fmt.Errorf("publishing this replica's storage use: %w", err)
		}
	}
	return errors.New("publishing this replica's storage use: the key kept changing")
}

// readOthers reads every other replica's share.
func (q *sharedQuota) readOthers(ctx context.Context) (map[string]quotaShare, error) {
	out := map[string]quotaShare{}
	after := ""
	for {
		keys, err := q.store.List(ctx, quotaPrefix, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("reading the replicas' storage use: %w", err)
		}
		for _, k := range keys {
			id := k[len(quotaPrefix):]
			if id == q.id {
				continue
			}
			b, _, err := q.store.Get(ctx, k)
			if errors.Is(err, kv.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading the replicas' storage use: %w", err)
			}
			var s quotaShare
			if json.Unmarshal(b, &s) != nil {
				continue
			}
			out[id] = s
		}
		if len(keys) < 1000 {
			return out, nil
		}
		after = keys[len(keys)-1]
	}
}

// othersUse is what the other replicas added since this one's last walk.
func (q *sharedQuota) othersUse(all map[string]quotaShare) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var n int64
	now := q.now()
	for id, s := range all {
		n += s.Committed - q.snap[id]
		if now.Sub(s.Updated) < quotaStale {
			n += s.Granted
		}
	}
	q.others = n
	return n
}

// snapshot records the others' committed bytes before a walk, and
// removes the keys of replicas long dead.
func (q *sharedQuota) snapshot(ctx context.Context) {
	all, err := q.readOthers(ctx)
	if err != nil {
		q.log.Warn("quota: reading the other replicas before a walk (their writes are counted high until the next)", "err", err)
		return
	}
	snap := map[string]int64{}
	now := q.now()
	for id, s := range all {
		if now.Sub(s.Updated) > quotaForget {
			_ = q.store.Delete(ctx, quotaPrefix+id, "")
			continue
		}
		snap[id] = s.Committed
	}
	q.mu.Lock()
	q.snap = snap
	q.mu.Unlock()
	q.othersUse(all)
}

// cachedOthers is the others' share at the last read.
func (q *sharedQuota) cachedOthers() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.others
}
