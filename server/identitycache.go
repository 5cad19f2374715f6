package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// identityCache keeps the identity shards and tokens a State read from a
// bucket, by key and version, so that the next Read (`clients ls`, `token
// ls`, the Clients and Tokens pages) costs one LIST of identities/ and one
// of tokens/ (ListObjectsV2 names each object's ETag, its version) plus a
// GET of each key that changed, instead of 256 GETs and one per token
// (issue 14: 439 ms for 10,000 clients on MinIO, the target 200 ms). A
// LIST is as current as a GET, so nothing is staler than before: a join
// or a revocation changes its shard's ETag, and the next Read fetches it.
type identityCache struct {
	mu      sync.Mutex
	m       map[string]cachedKey
	changed bool // since it was loaded: SaveIdentityCache has something to write

	layoutAt time.Time // when identities.json was last read as the sharded layout

	// The identity snapshot (identitysnapshot.go): its version in the
	// last listing of identities/, the version last read or written, and
	// the versions of the keys that one holds.
	listedSnap kv.Version
	snapVer    kv.Version
	snapKeys   map[string]kv.Version
	log        *slog.Logger
}

// layoutRecheck is how long a State on a bucket trusts the sharded layout
// it found before it reads identities.json again (ensureLayout).
const layoutRecheck = 10 * time.Second

func (c *identityCache) layoutSeenWithin(d time.Duration) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.layoutAt.IsZero() && time.Since(c.layoutAt) < d
}

func (c *identityCache) sawLayout() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.layoutAt = time.Now()
}

// cachedKey is one shard (ids) or one token (tk) as read at ver.
type cachedKey struct {
	ver kv.Version
	ids []*Identity
	tk  *Token
}

// empty reports whether the cache holds nothing (a process's first read).
func (c *identityCache) empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m) == 0
}

// get is key's entry; nothing on a nil cache. Its identities are shared:
// clone them before changing any.
func (c *identityCache) get(key string) (cachedKey, bool) {
	if c == nil {
		return cachedKey{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

// put stores e as key's entry, e.g. what this State just wrote; nothing
// on a nil cache.
func (c *identityCache) put(key string, e cachedKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = e
	c.changed = true
}

var identityCachesMu sync.Mutex // State.ids is made once

func (s *State) identityCache() *identityCache {
	identityCachesMu.Lock()
	defer identityCachesMu.Unlock()
	if s.ids == nil {
		s.ids = &identityCache{m: map[string]cachedKey{}}
	}
	return s.ids
}

// shardNumber is n for shardKey(n), false for any other key.
func shardNumber(key string) (int, bool) {
	h, ok := strings.CutPrefix(key, shardDir)
	if !ok {
		return 0, false
	}
	h, ok = strings.CutSuffix(h, ".json")
	if !ok || len(h) != 2 {
		return 0, false
	}
	n, err := strconv.ParseUint(h, 16, 8)
	if err != nil || shardKey(int(n)) != key {
		return 0, false
	}
	return int(n), true
}

// listVersions pages through prefix.
func (s *IdentityStore) listVersions(ctx context.Context, vl kv.VersionLister, prefix string) ([]kv.KeyVersion, error) {
	return listAll(ctx, s, prefix, vl.ListVersions, func(v kv.KeyVersion) string { return v.Key })
}

// readCached is read through s.cache: list the keys with their versions,
// fetch those the cache does not hold at that version, and answer copies
// (callers may change what they get).
func (s *IdentityStore) readCached(ctx context.Context, vl kv.VersionLister, identities, tokens bool) (*Records, error) {
	// The LISTs at once, and on a first read (nothing cached) the
	// identity snapshot with them: it will be wanted if there is one.
	var (
		wg             sync.WaitGroup
		ids, tks       []kv.KeyVersion
		idsErr, tksErr error
		early          *fetchedSnapshot
	)
	if identities {
		wg.Add(1)
		go func() { defer wg.Done(); ids, idsErr = s.listVersions(ctx, vl, shardDir) }()
		if s.cache.empty() {
			wg.Add(1)
			go func() { defer wg.Done(); early = s.fetchSnapshot(ctx) }()
		}
	}
	if tokens {
		wg.Add(1)
		go func() { defer wg.Done(); tks, tksErr = s.listVersions(ctx, vl, tokenDir) }()
	}
	wg.Wait()
	if err := cmp.Or(idsErr, tksErr); err != nil {
		return nil, err
	}
	var want []kv.KeyVersion
	snap := kv.Version("") // the identity snapshot's, if listed
	for _, k := range ids {
		if _, ok := shardNumber(k.Key); ok {
			want = append(want, k)
		} else if k.Key == snapshotKey {
			snap = k.Version
		}
	}
	if identities {
		s.cache.mu.Lock()
		s.cache.listedSnap = snap
		s.cache.mu.Unlock()
	}
	want = append(want, tks...)
	if identities {
		// The snapshot holds the tokens as well.
		s.useSnapshot(ctx, want, snap, false, early)
	}
	c := s.cache
	var fetch []string
	c.mu.Lock()
	for _, k := range want {
		if e, ok := c.m[k.Key]; !ok || e.ver != k.Version {
			fetch = append(fetch, k.Key)
		}
	}
	c.mu.Unlock()
	if err := parallel(ctx, readParallel, fetch, func(key string) error {
		b, ver, err := s.kv.Get(ctx, key)
		if errors.Is(err, kv.ErrNotFound) {
			return nil // removed since the list: left out below
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", s.keyWhere(key), err)
		}
		e := cachedKey{ver: ver}
		if n, ok := shardNumber(key); ok {
			e.ids, err = s.parseShard(n, b)
		} else {
			e.tk, err = s.parseToken(key, b)
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.m[key] = e
		c.changed = true
		c.mu.Unlock()
		return nil
	}); err != nil {
		return nil, err
	}

	r := &Records{}
	listed := make(map[string]bool, len(want))
	c.mu.Lock()
	for _, k := range want {
		listed[k.Key] = true
		e, ok := c.m[k.Key]
		if !ok {
			continue
		}
		for _, i := range e.ids {
			cp := *i
			r.Identities = append(r.Identities, &cp)
		}
		if e.tk != nil {
			cp := *e.tk
			r.Tokens = append(r.Tokens, &cp)
		}
	}
	// What is no longer listed is gone (a removed token).
	for key := range c.m {
		_, isShard := shardNumber(key)
		if !listed[key] && ((isShard && identities) || (!isShard && tokens)) {
			delete(c.m, key)
			c.changed = true
		}
	}
	c.mu.Unlock()
	sortRecords(r)
	return r, nil
}

// parallel runs f on each key, n at a time, and returns the first error.
func parallel(ctx context.Context, n int, keys []string, f func(string) error) error {
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	work := make(chan string)
	for range min(n, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if err := f(k); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		work <- k
	}
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// The identity cache of an admin command (`edgecrd clients ls`, `token
// ls` with --storage) lives in a file between runs, so that each run
// reads only what changed since the last. It holds what the bucket holds
// (secret hashes included, never a secret), is written 0600, and is only
// a cache: a file that cannot be read is ignored, and the bucket's LIST
// decides what of it is used.

const identityCacheFormat = 1

type identityCacheFile struct {
	Format   int                         `json:"format"`
	Location string                      `json:"location"`
	Keys     map[string]identityCacheKey `json:"keys"`
}

type identityCacheKey struct {
	Version    kv.Version  `json:"version"`
	Identities []*Identity `json:"identities,omitempty"`
	Token      *Token      `json:"token,omitempty"`
}

// LoadIdentityCache fills the state's identity cache from the file path
// (written by SaveIdentityCache for the same bucket). It does nothing for
// a data dir (reads there are local), for a missing file, or for one that
// cannot be used (it says why; the caller may warn and go on).
func (s *State) LoadIdentityCache(path string) error {
	if _, ok := s.KV().(kv.VersionLister); !ok || s.loc == nil {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the identity cache %s: %w", path, err)
	}
	var f identityCacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("reading the identity cache %s: %w", path, err)
	}
	if f.Format != identityCacheFormat || f.Location != s.loc.String() {
		return fmt.Errorf("reading the identity cache %s: it is of format %d for %q, not format %d for %q", path, f.Format, f.Location, identityCacheFormat, s.loc)
	}
	c := s.identityCache()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, e := range f.Keys {
		if e.Version == "" || !cachedEntryFits(key, e) {
			continue // not what a read stores there: read it again
		}
		c.m[key] = cachedKey{ver: e.Version, ids: e.Identities, tk: e.Token}
	}
	c.changed = false
	return nil
}

// cachedEntryFits reports whether e is what a read of key could have
// stored: a shard's identities all hashing to it, or the token of that key.
func cachedEntryFits(key string, e identityCacheKey) bool {
	if n, ok := shardNumber(key); ok {
		if e.Token != nil {
			return false
		}
		for _, i := range e.Identities {
			if i == nil || i.ID == "" || shardOf(i.ID) != n {
				return false
			}
		}
		return true
	}
	return strings.HasPrefix(key, tokenDir) && e.Identities == nil && e.Token != nil && tokenKey(e.Token.ID) == key
}

// SaveIdentityCache writes the state's identity cache to path (0600, its
// directory made 0700), replacing it whole; nothing when no read changed
// it since LoadIdentityCache.
func (s *State) SaveIdentityCache(path string) error {
	if _, ok := s.KV().(kv.VersionLister); !ok || s.loc == nil {
		return nil
	}
	f := identityCacheFile{Format: identityCacheFormat, Location: s.loc.String(), Keys: map[string]identityCacheKey{}}
	c := s.identityCache()
	c.mu.Lock()
	if !c.changed {
		c.mu.Unlock()
		return nil
	}
	c.changed = false
	for key, e := range c.m {
		f.Keys[key] = identityCacheKey{Version: e.ver, Identities: e.ids, Token: e.tk}
	}
	b, err := json.Marshal(f)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("writing the identity cache %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing the identity cache %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("writing the identity cache %s: %w", path, err)
	}
	return nil
}

// IdentityCachePath is where an admin command on a bucket keeps its
// identity cache under the user's cache directory dir: a file per bucket
// and prefix; "" for a data dir.
func (s *State) IdentityCachePath(dir string) string {
	if s.loc == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(s.loc.String()))
	return filepath.Join(dir, "edgecrd", "identities-"+hex.EncodeToString(sum[:8])+".json")
}
