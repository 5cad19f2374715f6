package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Joins on one token spend its uses by compare-and-swap on the token's
// key, so that a use count is exact across replicas. One CAS a join made
// the joins on one token a queue on that key: on a bucket each CAS is a
// GET and a conditional PUT, and 8 joiners on one replica conflicted with
// each other (issue 14: 48 joins/s on MinIO). So the joins on one token
// in one State are committed in groups: a join that finds a commit of its
// token in flight waits, and the next commit spends the uses of every
// join waiting then at once, in one CAS, each getting its own answer (a
// use, or TOKEN_USED_UP once the uses are gone, or its own invalid
// secret). Across replicas nothing changes: their commits are CAS writes
// on the same key and retry on conflict.
//
// The joins of a group that got a use are then written as new identities
// together, in one CAS on one shard: their ids are drawn at random until
// they fall in a shard picked at random for the group (about 256 draws
// each, ~0.1 ms), so a group costs two writes whatever its size, while
// shards stay even. The next group's token commit does not wait for it.
//
// The token as this State last wrote it, with its version, is kept (until
// it expires), so a commit tries its PUT without reading the token first;
// a conflict (another replica's commit, a removal) reads it again.

// tokenCommits is a State's queues of redemptions, by token id, and the
// tokens as it last wrote them.
type tokenCommits struct {
	mu     sync.Mutex
	queues map[string]*redeemQueue
	last   map[string]writtenToken
}

// redeemQueue is one token's redemptions waiting for a commit.
type redeemQueue struct {
	waiting []*redemption
	running bool
}

// writtenToken is a token as this State last wrote it, at version ver.
type writtenToken struct {
	tk  *Token
	ver kv.Version
}

// redemption is one join's claim on a use, and its answer.
type redemption struct {
	secret, name string
	now          time.Time

	role Role // set by the token's commit
	res  *JoinResult
	err  error
	done chan struct{}
}

var tokenCommitsMu sync.Mutex // State.redeems is made once

func (s *State) tokenCommits() *tokenCommits {
	tokenCommitsMu.Lock()
	defer tokenCommitsMu.Unlock()
	if s.redeems == nil {
		s.redeems = &tokenCommits{queues: map[string]*redeemQueue{}, last: map[string]writtenToken{}}
	}
	return s.redeems
}

// redeem spends one use of token p.ID on a new client named name at now:
// its credential, or why not (ErrTokenInvalid, also for a token that does
// not exist, ErrTokenExpired, ErrTokenUsedUp, or the store's error).
func (c *tokenCommits) redeem(store *IdentityStore, p ParsedToken, name string, now time.Time) (*JoinResult, error) {
	r := &redemption{secret: p.Secret, name: name, now: now, done: make(chan struct{})}
	c.mu.Lock()
	q := c.queues[p.ID]
	if q == nil {
		q = &redeemQueue{}
		c.queues[p.ID] = q
	}
	q.waiting = append(q.waiting, r)
	if !q.running {
		q.running = true
		go c.commitAll(store, p.ID, q)
	}
	c.mu.Unlock()
	<-r.done
	return r.res, r.err
}

// commitAll commits q's redemptions, a group at a time, until none wait;
// the identities of each group are written while the next group commits.
func (c *tokenCommits) commitAll(store *IdentityStore, id string, q *redeemQueue) {
	for {
		c.mu.Lock()
		group := q.waiting
		q.waiting = nil
		if len(group) == 0 {
			q.running = false
			delete(c.queues, id)
			c.mu.Unlock()
			return
		}
		last := c.last[id]
		c.mu.Unlock()
		last = store.commitRedemptions(id, last, group)
		c.mu.Lock()
		c.remember(id, last)
		c.mu.Unlock()
		var joined []*redemption
		for _, r := range group {
			if r.err != nil {
				close(r.done)
			} else {
				joined = append(joined, r)
			}
		}
		if len(joined) > 0 {
			go store.addJoined(id, joined)
		}
	}
}

// remember keeps w as token id's last write (none when w.tk is nil),
// forgetting expired tokens; c.mu is held.
func (c *tokenCommits) remember(id string, w writtenToken) {
	if w.tk == nil {
		delete(c.last, id)
		return
	}
	c.last[id] = w
	if len(c.last) > 64 {
		now := time.Now()
		for k, o := range c.last {
			if !now.Before(o.tk.Expires) {
				delete(c.last, k)
			}
		}
	}
}

// addJoined stores a new client identity for each redemption of token
// tokenID that got a use, all in one shard, and answers them.
func (s *IdentityStore) addJoined(tokenID string, rs []*redemption) {
	err := func() error {
		ctx, cancel := opCtx()
		defer cancel()
		shard := mrand.IntN(shardCount)
		ids := make([]*Identity, len(rs))
		for k, r := range rs {
			id, err := clientIDIn(shard)
			if err != nil {
				return err
			}
			secret, err := NewSecret()
			if err != nil {
				return err
			}
			ids[k] = &Identity{ID: id, Name: r.name, Kind: "client", Role: r.role, SecretHash: HashSecret(secret), Created: r.now.UTC()}
			r.res = &JoinResult{ClientID: id, Secret: secret, Role: r.role}
		}
		return s.updateShard(ctx, ids[0].ID, func(cur []*Identity) ([]*Identity, error) {
			for _, o := range cur {
				for _, i := range ids {
					if o.ID == i.ID {
						return nil, fmt.Errorf("adding identity %s: it exists", i.ID)
					}
				}
			}
			return append(cur, ids...), nil
		})
	}()
	for _, r := range rs {
		if err != nil {
			r.res, r.err = nil, fmt.Errorf("joining %s (one use of token %s spent): %w", r.name, tokenID, err)
		}
		close(r.done)
	}
}

// clientIDIn draws a new client id ("c-" and 16 random hex digits) that
// falls in shard n.
func clientIDIn(n int) (string, error) {
	for {
		h, err := randomHex(8)
		if err != nil {
			return "", err
		}
		if id := "c-" + h; shardOf(id) == n {
			return id, nil
		}
	}
}

// commitRedemptions spends the uses of group on token id in one CAS and
// sets each redemption's role or error. It starts from last (the token as
// this State last wrote it) when it has one, and returns the token as it
// now is, or nothing after an error.
func (s *IdentityStore) commitRedemptions(id string, last writtenToken, group []*redemption) writtenToken {
	ctx, cancel := opCtx()
	defer cancel()
	key := tokenKey(id)
	tk, ver := last.tk, last.ver
	err := s.casLoop(ctx, "updating token "+s.keyWhere(key), func() error {
		cached := tk != nil
		if !cached {
			if !validTokenID(id) {
				return ErrNoSuchToken
			}
			b, v, err := s.kv.Get(ctx, key)
			if errors.Is(err, kv.ErrNotFound) {
				return ErrNoSuchToken
			}
			if err != nil {
				return fmt.Errorf("reading token %s: %w", s.keyWhere(key), err)
			}
			if tk, err = s.parseToken(key, b); err != nil {
				return err
			}
			ver = v
		}
		next := *tk
		for _, r := range group {
			r.role, r.err = next.claim(r.secret, r.now)
		}
		if next.Used == tk.Used {
			if cached {
				// Every claim refused on what this State wrote last: read
				// the token again (it may be gone) before answering.
				tk = nil
				return kv.ErrConflict
			}
			return nil
		}
		v, err := s.kv.Put(ctx, key, encodeToken(&next), ver)
		if err != nil {
			tk = nil // read it again
			return fmt.Errorf("writing token %s: %w", s.keyWhere(key), err)
		}
		tk, ver = &next, v
		return nil
	})
	if errors.Is(err, ErrNoSuchToken) {
		err = ErrTokenInvalid
	}
	if err != nil {
		for _, r := range group {
			r.role, r.err = "", err
		}
		return writtenToken{}
	}
	return writtenToken{tk, ver}
}

// claim spends one use of tk for a join with secret at now: tk's role, or
// why not.
func (tk *Token) claim(secret string, now time.Time) (Role, error) {
	want, _ := decodeHash(tk.SecretHash)
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return "", ErrTokenInvalid
	}
	if !now.Before(tk.Expires) {
		return "", ErrTokenExpired
	}
	if tk.Used >= tk.Uses {
		return "", ErrTokenUsedUp
	}
	tk.Used++
	return tk.Role, nil
}
