package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// The identities are stored in pieces, so that a join writes a few
// kilobytes whatever the number of clients (issue 14):
//
//   - identities/XX.json: the identities whose id hashes to shard XX (the
//     first byte of SHA-256(id), 256 shards), as {"identities": [...]};
//     a missing shard is empty. About 40 identities a shard at 10,000.
//   - tokens/<id>.json: one join token with its use count, changed by CAS,
//     so a use count is exact across replicas.
//   - identities/changes.json: a change counter and, per shard, the count
//     at its last change that others must see at once (a revocation). The
//     authenticators poll this one small key; a new identity needs no bump
//     (an unknown credential makes an authenticator read its shard).
//   - identities.json: the layout marker {"format": 2, ...}. Its
//     "identities" field is a string, so an edgecrd from before the split
//     refuses the data dir ("corrupt file: cannot unmarshal string") and
//     never reads a part of it. It is written last when a device is
//     created or converted, so it stays the key that says "initialised".
//
// A data dir or bucket written before the split holds every identity and
// token in identities.json; the first write (Ensure at serve or init, or
// any change) converts it: shards and tokens are written from it, then
// identities.json is replaced by the marker by CAS. A crash before that
// leaves the old document in charge and the next start converts again.
const (
	identitiesFormat = 2
	shardDir         = "identities/"
	tokenDir         = "tokens/"
	changesKey       = "identities/changes.json"
	shardCount       = 256
)

// identitiesMarker is identities.json in the sharded layout.
type identitiesMarker struct {
	Format     int    `json:"format"`
	Identities string `json:"identities"`
	Tokens     string `json:"tokens"`
}

var markerBytes = func() []byte {
	b, _ := json.MarshalIndent(identitiesMarker{
		Format:     identitiesFormat,
		Identities: "stored in identities/XX.json (format 2); an edgecrd that cannot read this is older than the data: upgrade it",
		Tokens:     "stored in tokens/ID.json (format 2)",
	}, "", "  ")
	return append(b, '\n')
}()

func shardOf(id string) int {
	sum := sha256.Sum256([]byte(id))
	return int(sum[0])
}

func shardKey(n int) string { return fmt.Sprintf("%s%02x.json", shardDir, n) }

func tokenKey(id string) string { return tokenDir + id + ".json" }

// validTokenID is what a stored token id may be (randomHex(8)); it keeps
// a key a plain file name.
func validTokenID(id string) bool { return len(id) == 16 && isHex(id) }

// IdentityStore is the device's identities and join tokens in its state
// (see the layout above). Every change is a compare-and-swap on one small
// key, so serve, admin commands and replicas on one bucket never lose each
// other's writes.
type IdentityStore struct {
	kv    kv.Store
	where string         // the marker's file or object, for errors
	cache *identityCache // on a store that lists versions; nil: none (identitycache.go)
}

// NewIdentityStore returns the store of the data dir dir.
func NewIdentityStore(dir string) *IdentityStore { return localState(dir).Identities() }

// Path names the file or object behind the store.
func (s *IdentityStore) Path() string { return s.where }

func (s *IdentityStore) keyWhere(key string) string {
	return strings.TrimSuffix(s.where, identitiesFile) + key
}

// layout reads identities.json: the old document (returned) or the marker
// (nil, nil).
func (s *IdentityStore) layout(ctx context.Context) (*Records, kv.Version, error) {
	b, ver, err := s.kv.Get(ctx, identitiesFile)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, "", fmt.Errorf("reading identities: %s does not exist (run edgecrd init)", s.where)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading identities %s: %w", s.where, err)
	}
	r, err := parseLayout(s.where, b)
	if err != nil {
		return nil, "", err
	}
	return r, ver, nil
}

// parseLayout reads identities.json: the old document, or nil for the
// marker.
func parseLayout(where string, b []byte) (*Records, error) {
	var head struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("reading identities %s: corrupt file: %w", where, err)
	}
	switch head.Format {
	case 0:
		return parseRecords(where, b)
	case identitiesFormat:
		return nil, nil
	}
	return nil, fmt.Errorf("reading identities %s: format %d is not one this edgecrd understands (%d; a newer edgecrd wrote it?): upgrade it", where, head.Format, identitiesFormat)
}

// ensureLayout converts identities.json from before the split, if it is
// that; see the layout comment for why a crash anywhere is safe.
//
// On a bucket a store that found the sharded layout trusts it for
// layoutRecheck without reading identities.json again (a join reads it
// otherwise): the layout never goes back, and a newer format is refused
// by the next check.
func (s *IdentityStore) ensureLayout(ctx context.Context) error {
	if s.cache.layoutSeenWithin(layoutRecheck) {
		return nil
	}
	for attempt := 0; ; attempt++ {
		old, ver, err := s.layout(ctx)
		if err == nil && old == nil {
			s.cache.sawLayout()
		}
		if err != nil || old == nil {
			return err
		}
		if err := s.writeAll(ctx, old); err != nil {
			return fmt.Errorf("converting identities %s to shards: %w", s.where, err)
		}
		if _, err := s.bump(ctx, allShards()); err != nil {
			return fmt.Errorf("converting identities %s to shards: %w", s.where, err)
		}
		_, err = s.kv.Put(ctx, identitiesFile, markerBytes, ver)
		if err == nil {
			return nil
		}
		if !errors.Is(err, kv.ErrConflict) || attempt >= 20 {
			return fmt.Errorf("converting identities %s to shards: %w", s.where, err)
		}
		// Changed meanwhile (an older edgecrd, or a replica converting too):
		// read it again.
	}
}

func allShards() []int {
	out := make([]int, shardCount)
	for i := range out {
		out[i] = i
	}
	return out
}

// writeAll makes the shards and tokens exactly r: every shard written or
// removed, every token written, tokens not in r removed.
func (s *IdentityStore) writeAll(ctx context.Context, r *Records) error {
	var shards [shardCount][]*Identity
	for _, i := range r.Identities {
		n := shardOf(i.ID)
		shards[n] = append(shards[n], i)
	}
	for n := range shards {
		key := shardKey(n)
		_, ver, err := s.kv.Get(ctx, key)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("reading %s: %w", s.keyWhere(key), err)
		}
		if len(shards[n]) == 0 {
			if err == nil {
				if err := s.kv.Delete(ctx, key, ""); err != nil {
					return fmt.Errorf("removing %s: %w", s.keyWhere(key), err)
				}
			}
			continue
		}
		if _, err := s.kv.Put(ctx, key, encodeShard(shards[n]), ver); err != nil {
			return fmt.Errorf("writing %s: %w", s.keyWhere(key), err)
		}
	}
	keep := map[string]bool{}
	for _, tk := range r.Tokens {
		if !validTokenID(tk.ID) {
			return fmt.Errorf("token id %q is not 16 hex digits", tk.ID)
		}
		key := tokenKey(tk.ID)
		keep[key] = true
		_, ver, err := s.kv.Get(ctx, key)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("reading %s: %w", s.keyWhere(key), err)
		}
		if _, err := s.kv.Put(ctx, key, encodeToken(tk), ver); err != nil {
			return fmt.Errorf("writing %s: %w", s.keyWhere(key), err)
		}
	}
	keys, err := s.listKeys(ctx, tokenDir)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !keep[k] {
			if err := s.kv.Delete(ctx, k, ""); err != nil {
				return fmt.Errorf("removing %s: %w", s.keyWhere(k), err)
			}
		}
	}
	return nil
}

func (s *IdentityStore) listKeys(ctx context.Context, prefix string) ([]string, error) {
	return listAll(ctx, s, prefix, s.kv.List, func(k string) string { return k })
}

// listAll pages through prefix with list, 1000 at a time; key is an
// item's key, where the next page starts after. A prefix with nothing
// under it is an empty list.
func listAll[T any](ctx context.Context, s *IdentityStore, prefix string, list func(ctx context.Context, prefix, after string, limit int) ([]T, error), key func(T) string) ([]T, error) {
	var out []T
	after := ""
	for {
		page, err := list(ctx, prefix, after, 1000)
		if errors.Is(err, kv.ErrNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.keyWhere(prefix), err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out, nil
		}
		after = key(page[len(page)-1])
	}
}

func encodeShard(ids []*Identity) []byte {
	slices.SortFunc(ids, func(a, b *Identity) int { return strings.Compare(a.ID, b.ID) })
	out, _ := json.MarshalIndent(Records{Identities: ids}, "", "  ")
	return append(out, '\n')
}

func encodeToken(tk *Token) []byte {
	out, _ := json.MarshalIndent(tk, "", "  ")
	return append(out, '\n')
}

func (s *IdentityStore) parseShard(n int, b []byte) ([]*Identity, error) {
	r, err := parseRecords(s.keyWhere(shardKey(n)), b)
	if err != nil {
		return nil, err
	}
	if len(r.Tokens) > 0 {
		return nil, fmt.Errorf("reading identities %s: corrupt file: tokens in a shard", s.keyWhere(shardKey(n)))
	}
	for _, i := range r.Identities {
		if shardOf(i.ID) != n {
			return nil, fmt.Errorf("reading identities %s: corrupt file: identity %s belongs in %s", s.keyWhere(shardKey(n)), i.ID, shardKey(shardOf(i.ID)))
		}
	}
	return r.Identities, nil
}

func (s *IdentityStore) parseToken(key string, b []byte) (*Token, error) {
	var tk Token
	if err := json.Unmarshal(b, &tk); err != nil {
		return nil, fmt.Errorf("reading token %s: corrupt file: %w", s.keyWhere(key), err)
	}
	if tokenKey(tk.ID) != key {
		return nil, fmt.Errorf("reading token %s: corrupt file: it holds token %q", s.keyWhere(key), tk.ID)
	}
	if _, err := decodeHash(tk.SecretHash); err != nil {
		return nil, fmt.Errorf("reading token %s: %w", s.keyWhere(key), err)
	}
	return &tk, nil
}

// readShard returns shard n and its version ("" when missing).
func (s *IdentityStore) readShard(ctx context.Context, n int) ([]*Identity, kv.Version, error) {
	b, ver, err := s.kv.Get(ctx, shardKey(n))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading identities %s: %w", s.keyWhere(shardKey(n)), err)
	}
	ids, err := s.parseShard(n, b)
	return ids, ver, err
}

// readParallel is how many keys Read fetches at once: on a bucket a GET is
// a round trip, and 256 of them one after the other would take a second.
const readParallel = 64

// Read returns every identity (sorted by creation) and token. A data dir
// from before the split is read as it is (Read changes nothing).
func (s *IdentityStore) Read() (*Records, error) {
	return s.read(true, true)
}

// ReadTokens returns the tokens only (sorted by creation).
func (s *IdentityStore) ReadTokens() ([]*Token, error) {
	r, err := s.read(false, true)
	if err != nil {
		return nil, err
	}
	return r.Tokens, nil
}

func (s *IdentityStore) read(identities, tokens bool) (*Records, error) {
	ctx, cancel := opCtx()
	defer cancel()
	old, _, err := s.layout(ctx)
	if err != nil || old != nil {
		return old, err
	}
	if vl, ok := s.kv.(kv.VersionLister); ok && s.cache != nil {
		return s.readCached(ctx, vl, identities, tokens)
	}
	r := &Records{}
	var mu sync.Mutex
	var firstErr error
	work := make(chan func() error)
	var wg sync.WaitGroup
	for range readParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := f(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for n := range shardCount {
		if !identities {
			break
		}
		work <- func() error {
			ids, _, err := s.readShard(ctx, n)
			mu.Lock()
			r.Identities = append(r.Identities, ids...)
			mu.Unlock()
			return err
		}
	}
	var keys []string
	if tokens {
		keys, err = s.listKeys(ctx, tokenDir)
	}
	if err != nil {
		close(work)
		wg.Wait()
		return nil, err
	}
	for _, k := range keys {
		work <- func() error {
			b, _, err := s.kv.Get(ctx, k)
			if errors.Is(err, kv.ErrNotFound) {
				return nil // removed while we list
			}
			if err != nil {
				return fmt.Errorf("reading token %s: %w", s.keyWhere(k), err)
			}
			tk, err := s.parseToken(k, b)
			if err != nil {
				return err
			}
			mu.Lock()
			r.Tokens = append(r.Tokens, tk)
			mu.Unlock()
			return nil
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	sortRecords(r)
	return r, nil
}

// sortRecords orders identities and tokens by creation, then id.
func sortRecords(r *Records) {
	slices.SortFunc(r.Identities, func(a, b *Identity) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.SortFunc(r.Tokens, func(a, b *Token) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// updateAttempts bounds the compare-and-swap retries of one key; with the
// jitter below, 30 writers racing on one bucket all get through well
// within it.
const updateAttempts = 200

// casLoop runs once until it returns something other than kv.ErrConflict,
// with a random pause growing by up to 2 ms an attempt (capped at 100 ms),
// up to updateAttempts times or ctx's end.
func (s *IdentityStore) casLoop(ctx context.Context, what string, once func() error) error {
	for attempt := 1; ; attempt++ {
		err := once()
		if !errors.Is(err, kv.ErrConflict) {
			return err
		}
		if attempt >= updateAttempts {
			return fmt.Errorf("%s: %d conflicting writes in a row: %w", what, attempt, err)
		}
		pause := time.Duration(mrand.Int64N(int64(min(attempt*2, 100))*int64(time.Millisecond)) + 1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (after %d conflicting writes)", what, ctx.Err(), attempt)
		case <-time.After(pause):
		}
	}
}

// updateShard changes the shard of id by CAS; fn may run several times.
// On a bucket the first attempt starts from the shard as the identity
// cache holds it (what this State last read or wrote) instead of reading
// it: a join then costs one PUT on its shard, and a conflict (another
// writer changed it) reads it again. What it writes goes into the cache.
func (s *IdentityStore) updateShard(ctx context.Context, id string, fn func([]*Identity) ([]*Identity, error)) error {
	n := shardOf(id)
	key := shardKey(n)
	fromCache := s.cache != nil
	return s.casLoop(ctx, "updating identities "+s.keyWhere(key), func() error {
		var ids []*Identity
		var ver kv.Version
		if e, ok := s.cache.get(key); fromCache && ok {
			ids, ver = cloneIdentities(e.ids), e.ver
		} else {
			var err error
			if ids, ver, err = s.readShard(ctx, n); err != nil {
				return err
			}
		}
		fromCache = false
		ids, err := fn(ids)
		if err != nil {
			return err
		}
		v, err := s.kv.Put(ctx, key, encodeShard(ids), ver)
		if err != nil {
			return fmt.Errorf("writing identities %s: %w", s.keyWhere(key), err)
		}
		s.cache.put(key, cachedKey{ver: v, ids: cloneIdentities(ids)})
		return nil
	})
}

func cloneIdentities(ids []*Identity) []*Identity {
	out := make([]*Identity, len(ids))
	for k, i := range ids {
		cp := *i
		out[k] = &cp
	}
	return out
}

// changes is identities/changes.json.
type changes struct {
	Seq    int64            `json:"seq"`
	Shards map[string]int64 `json:"shards"` // shard hex → seq of its last change
}

func parseChanges(where string, b []byte) (*changes, error) {
	var c changes
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("reading identity changes %s: corrupt file: %w", where, err)
	}
	return &c, nil
}

// bump records that shards changed in a way every authenticator must see
// within its bound (a revocation); it returns the new counter.
func (s *IdentityStore) bump(ctx context.Context, shards []int) (int64, error) {
	var seq int64
	err := s.casLoop(ctx, "updating "+s.keyWhere(changesKey), func() error {
		b, ver, err := s.kv.Get(ctx, changesKey)
		c := &changes{}
		switch {
		case err == nil:
			if c, err = parseChanges(s.keyWhere(changesKey), b); err != nil {
				return err
			}
		case !errors.Is(err, kv.ErrNotFound):
			return fmt.Errorf("reading %s: %w", s.keyWhere(changesKey), err)
		}
		if c.Shards == nil {
			c.Shards = map[string]int64{}
		}
		c.Seq++
		for _, n := range shards {
			c.Shards[fmt.Sprintf("%02x", n)] = c.Seq
		}
		out, _ := json.Marshal(c)
		if _, err := s.kv.Put(ctx, changesKey, append(out, '\n'), ver); err != nil {
			return fmt.Errorf("writing %s: %w", s.keyWhere(changesKey), err)
		}
		seq = c.Seq
		return nil
	})
	return seq, err
}

// Update reads every identity and token, runs fn on them and writes the
// keys fn changed, each by CAS on the version read; on a conflict it
// starts again (fn may run several times and must depend only on the
// records it is given). A change touching several keys is not atomic
// across them: what needs that (a join) has its own path. When create is
// true a device without identities gets them (the marker written last).
// For the admin commands and tests; the hot paths (Redeem, Revoke,
// CreateToken) touch one or two keys directly.
func (s *IdentityStore) Update(create bool, fn func(*Records) error) error {
	ctx, cancel := opCtx()
	defer cancel()
	fresh := false
	if _, _, err := s.kv.Get(ctx, identitiesFile); errors.Is(err, kv.ErrNotFound) {
		if !create {
			return fmt.Errorf("updating identities: %s does not exist (run edgecrd init)", s.where)
		}
		fresh = true
	} else if err != nil {
		return fmt.Errorf("reading identities %s: %w", s.where, err)
	} else if err := s.ensureLayout(ctx); err != nil {
		return err
	}
	return s.casLoop(ctx, "updating identities "+s.where, func() error {
		if err := s.updateAll(ctx, fn); err != nil {
			return err
		}
		if fresh {
			if _, err := s.kv.Put(ctx, identitiesFile, markerBytes, ""); err != nil && !errors.Is(err, kv.ErrConflict) {
				return fmt.Errorf("writing identities %s: %w", s.where, err)
			}
			// A conflict: another replica created the device at the same
			// moment; its marker is the same bytes.
		}
		return nil
	})
}

func (s *IdentityStore) updateAll(ctx context.Context, fn func(*Records) error) error {
	type shardState struct {
		ver  kv.Version
		body string
	}
	var shards [shardCount]shardState
	r := &Records{}
	for n := range shardCount {
		ids, ver, err := s.readShard(ctx, n)
		if err != nil {
			return err
		}
		shards[n] = shardState{ver, string(encodeShard(slices.Clone(ids)))}
		r.Identities = append(r.Identities, ids...)
	}
	keys, err := s.listKeys(ctx, tokenDir)
	if err != nil {
		return err
	}
	tokVer := map[string]kv.Version{}
	tokBody := map[string]string{}
	for _, k := range keys {
		b, ver, err := s.kv.Get(ctx, k)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading token %s: %w", s.keyWhere(k), err)
		}
		tk, err := s.parseToken(k, b)
		if err != nil {
			return err
		}
		tokVer[tk.ID], tokBody[tk.ID] = ver, string(encodeToken(tk))
		r.Tokens = append(r.Tokens, tk)
	}
	if err := fn(r); err != nil {
		return err
	}
	var next [shardCount][]*Identity
	for _, i := range r.Identities {
		if i == nil || i.ID == "" {
			return errors.New("updating identities: an identity without id")
		}
		next[shardOf(i.ID)] = append(next[shardOf(i.ID)], i)
	}
	var revoked []int
	for n := range shardCount {
		body := encodeShard(next[n])
		if string(body) == shards[n].body {
			continue
		}
		key := shardKey(n)
		if len(next[n]) == 0 {
			if err := s.kv.Delete(ctx, key, shards[n].ver); err != nil {
				return fmt.Errorf("removing %s: %w", s.keyWhere(key), err)
			}
		} else if _, err := s.kv.Put(ctx, key, body, shards[n].ver); err != nil {
			return fmt.Errorf("writing identities %s: %w", s.keyWhere(key), err)
		}
		revoked = append(revoked, n)
	}
	seen := map[string]bool{}
	for _, tk := range r.Tokens {
		if !validTokenID(tk.ID) {
			return fmt.Errorf("updating identities: token id %q is not 16 hex digits", tk.ID)
		}
		seen[tk.ID] = true
		body := encodeToken(tk)
		if string(body) == tokBody[tk.ID] {
			continue
		}
		if _, err := s.kv.Put(ctx, tokenKey(tk.ID), body, tokVer[tk.ID]); err != nil {
			return fmt.Errorf("writing token %s: %w", s.keyWhere(tokenKey(tk.ID)), err)
		}
	}
	for id, ver := range tokVer {
		if !seen[id] {
			if err := s.kv.Delete(ctx, tokenKey(id), ver); err != nil {
				return fmt.Errorf("removing token %s: %w", s.keyWhere(tokenKey(id)), err)
			}
		}
	}
	if len(revoked) > 0 {
		// Whatever fn did (it may have revoked), every authenticator
		// looks at these shards within its bound.
		if _, err := s.bump(ctx, revoked); err != nil {
			return err
		}
	}
	return nil
}

// Revoke marks identity id revoked. A serve on the same data dir refuses it
// from the next request on; replicas on a bucket within 2 s (authn.go).
// Revoking again re-announces it (a revocation interrupted between its two
// writes is completed by running it again).
func (s *IdentityStore) Revoke(id string, now time.Time) error {
	ctx, cancel := opCtx()
	defer cancel()
	if err := s.ensureLayout(ctx); err != nil {
		return err
	}
	err := s.updateShard(ctx, id, func(ids []*Identity) ([]*Identity, error) {
		for _, i := range ids {
			if i.ID == id {
				if i.Revoked == nil {
					t := now.UTC()
					i.Revoked = &t
				}
				return ids, nil
			}
		}
		return nil, fmt.Errorf("revoking %s: %w", id, ErrNoSuchIdentity)
	})
	if err != nil {
		return err
	}
	_, err = s.bump(ctx, []int{shardOf(id)})
	return err
}

// ErrNoSuchIdentity is returned for an unknown identity id.
var ErrNoSuchIdentity = errors.New("no such identity")

// addIdentity stores a new identity (its id must be new).
func (s *IdentityStore) addIdentity(ctx context.Context, i *Identity) error {
	return s.updateShard(ctx, i.ID, func(ids []*Identity) ([]*Identity, error) {
		for _, o := range ids {
			if o.ID == i.ID {
				return nil, fmt.Errorf("adding identity %s: it exists", i.ID)
			}
		}
		return append(ids, i), nil
	})
}

// hexShard is shard n's name in changes.json.
func hexShard(s string) (int, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 1 {
		return 0, false
	}
	return int(b[0]), true
}
