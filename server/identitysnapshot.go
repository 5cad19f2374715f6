package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// The identity snapshot: a listing's first read on a machine (`edgecrd
// clients ls` without its cache file, a replica's first Clients page) had
// to GET all 256 shards (513 ms at 10,000 clients on MinIO, the target
// 200 ms). So a serving replica keeps, in the bucket, one object holding
// every shard and token with the version (ETag) each was read at:
// identities/snapshot.json. A read LISTs identities/ as before (one
// request, which names the snapshot's ETag too), GETs the snapshot when
// more keys than snapshotSlack would have to be fetched, takes from it
// every key whose recorded version is the one listed, and GETs only the
// rest. So the snapshot is never trusted beyond the ETags: a shard changed
// since it was written (a join, a revocation) lists with another ETag and
// is read from its own object; a key no longer listed is not shown
// whatever the snapshot says. A snapshot that does not parse, or holds an
// entry a read could not have stored (an identity in the wrong shard), is
// ignored whole with a log line, and the read GETs the shards.
//
// Replicas rewrite it in the background (State.RunIdentitySnapshot: at
// most every identitySnapshotEvery, and only when more than snapshotSlack
// keys differ from the last snapshot), by CAS on the version they listed:
// of replicas writing at once one wins and the others try on their next
// round.
const (
	snapshotKey           = shardDir + "snapshot.json"
	identitySnapshotEvery = 10 * time.Second
	// snapshotSlack: a read that would GET at most this many keys does
	// so rather than GET the snapshot, and a snapshot that differs from
	// the bucket in at most this many keys is not rewritten.
	snapshotSlack = 16

	identitySnapshotFormat = 1
)

// identitySnapshot is identities/snapshot.json.
type identitySnapshot struct {
	Format  int                         `json:"format"`
	Written time.Time                   `json:"written"`
	Keys    map[string]identityCacheKey `json:"keys"`
}

// parseSnapshot reads a snapshot and checks that each entry is one a read
// could have stored under its key.
func parseSnapshot(b []byte) (map[string]identityCacheKey, error) {
	var s identitySnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Format != identitySnapshotFormat {
		return nil, fmt.Errorf("format %d, not %d", s.Format, identitySnapshotFormat)
	}
	for key, e := range s.Keys {
		if e.Version == "" {
			return nil, fmt.Errorf("%s has no version", key)
		}
		if !cachedEntryFits(key, e) {
			return nil, fmt.Errorf("%s holds what a read of it cannot give", key)
		}
	}
	return s.Keys, nil
}

// SetLogger sets where the state's background work and the reads of the
// identity snapshot log (slog.Default when never set).
func (s *State) SetLogger(l *slog.Logger) {
	c := s.identityCache()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = l
}

func (c *identityCache) logger() *slog.Logger {
	if c.log == nil {
		return slog.Default()
	}
	return c.log
}

// fetchedSnapshot is a GET of the snapshot: its bytes and version, or
// the error (kv.ErrNotFound when there is none).
type fetchedSnapshot struct {
	b   []byte
	ver kv.Version
	err error
}

func (s *IdentityStore) fetchSnapshot(ctx context.Context) *fetchedSnapshot {
	b, ver, err := s.kv.Get(ctx, snapshotKey)
	return &fetchedSnapshot{b, ver, err}
}

// useSnapshot fills the cache from the snapshot listed at ver when it
// saves GETs: more than snapshotSlack keys of want are missing or stale,
// and this snapshot was not read before; force reads it whatever want
// (the writer, to compare). want is the read's listing; early, if not
// nil, the snapshot fetched with the listing (it may be older than the
// one listed: each key is still taken only at its listed version).
func (s *IdentityStore) useSnapshot(ctx context.Context, want []kv.KeyVersion, ver kv.Version, force bool, early *fetchedSnapshot) {
	c := s.cache
	c.mu.Lock()
	stale := 0
	for _, k := range want {
		if e, ok := c.m[k.Key]; !ok || e.ver != k.Version {
			stale++
		}
	}
	seen := c.snapVer == ver
	c.mu.Unlock()
	if ver == "" || seen || (stale <= snapshotSlack && !force) {
		return
	}
	f := early
	if f == nil || f.err != nil {
		f = s.fetchSnapshot(ctx)
	}
	if errors.Is(f.err, kv.ErrNotFound) {
		return
	}
	if f.err != nil {
		// Not fatal: the read GETs the shards instead, and says why it
		// fails if they fail too.
		c.logger().Warn("reading the identity snapshot; reading every shard instead", "key", s.keyWhere(snapshotKey), "err", f.err)
		return
	}
	keys, err := parseSnapshot(f.b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapVer = f.ver
	if err != nil {
		c.snapKeys = nil
		c.logger().Warn("ignoring the identity snapshot: it is corrupt; reading every shard instead", "key", s.keyWhere(snapshotKey), "err", err)
		return
	}
	c.snapKeys = make(map[string]kv.Version, len(keys))
	listed := make(map[string]kv.Version, len(want))
	for _, k := range want {
		listed[k.Key] = k.Version
	}
	for key, e := range keys {
		c.snapKeys[key] = e.Version
		if v, ok := listed[key]; !ok || v != e.Version {
			continue // changed since, or gone: not from the snapshot
		}
		if cur, ok := c.m[key]; ok && cur.ver == e.Version {
			continue
		}
		c.m[key] = cachedKey{ver: e.Version, ids: e.Identities, tk: e.Token}
		c.changed = true
	}
}

// WriteIdentitySnapshot brings the cache up to date with the bucket (a
// read of every shard and token, fetching what changed) and rewrites the
// identity snapshot when more than snapshotSlack keys differ from the one
// in the bucket. It reports whether it wrote one; a replica that wrote
// one at the same moment is not an error (it wrote the same kind of
// thing). Nothing on a data dir.
func (s *State) WriteIdentitySnapshot(ctx context.Context) (bool, error) {
	store := s.Identities()
	vl, ok := store.kv.(kv.VersionLister)
	if !ok || store.cache == nil {
		return false, nil
	}
	old, _, err := store.layout(ctx)
	if err != nil || old != nil {
		return false, err // not converted yet: the next round
	}
	if _, err := store.readCached(ctx, vl, true, true); err != nil {
		return false, err
	}
	c := store.cache
	c.mu.Lock()
	listedVer := c.listedSnap
	if listedVer != c.snapVer {
		// Another replica wrote it since this one last looked: read it
		// (readCached did not, as it had everything) to compare.
		c.mu.Unlock()
		store.useSnapshot(ctx, nil, listedVer, true, nil)
		c.mu.Lock()
		if c.snapVer != listedVer {
			// Not read (it failed, or is gone): compare with nothing.
			c.snapKeys = nil
		}
	}
	diff := 0
	for key, e := range c.m {
		if v, ok := c.snapKeys[key]; !ok || v != e.ver {
			diff++
		}
	}
	for key := range c.snapKeys {
		if _, ok := c.m[key]; !ok {
			diff++
		}
	}
	if diff <= snapshotSlack {
		c.mu.Unlock()
		return false, nil
	}
	snap := identitySnapshot{Format: identitySnapshotFormat, Written: time.Now().UTC(), Keys: make(map[string]identityCacheKey, len(c.m))}
	keys := make(map[string]kv.Version, len(c.m))
	for key, e := range c.m {
		snap.Keys[key] = identityCacheKey{Version: e.ver, Identities: e.ids, Token: e.tk}
		keys[key] = e.ver
	}
	b, err := json.Marshal(snap)
	c.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("writing the identity snapshot %s: %w", store.keyWhere(snapshotKey), err)
	}
	ver, err := store.kv.Put(ctx, snapshotKey, b, listedVer)
	if errors.Is(err, kv.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("writing the identity snapshot %s: %w", store.keyWhere(snapshotKey), err)
	}
	c.mu.Lock()
	c.snapVer, c.snapKeys, c.listedSnap = ver, keys, ver
	c.mu.Unlock()
	return true, nil
}

// RunIdentitySnapshot keeps the identity snapshot of a state on a bucket
// up to date (WriteIdentitySnapshot every identitySnapshotEvery) until
// ctx ends. Nothing on a data dir.
func (s *State) RunIdentitySnapshot(ctx context.Context) {
	if _, ok := s.KV().(kv.VersionLister); !ok || s.loc == nil {
		return
	}
	log := s.identityCache().logger()
	t := time.NewTicker(identitySnapshotEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, stateTimeout)
		wrote, err := s.WriteIdentitySnapshot(wctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("updating the identity snapshot", "err", err)
		case wrote:
			log.Debug("wrote the identity snapshot")
		}
	}
}
