package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PullThroughOf is the pull-through entry whose prefix holds the device
// repository repo, or nil.
func (c *Config) PullThroughOf(repo string) (*PullThrough, string) {
	for _, p := range c.PullThrough {
		if up, ok := p.UpstreamRepo(repo); ok {
			return p, up
		}
	}
	return nil, ""
}

// Manifest is a manifest a pull-through answers with before the device
// stores it.
type Manifest struct {
	Raw       []byte
	MediaType types.MediaType
	Digest    v1.Hash
}

// pull is one pull-through under way: its manifest, once read from the
// upstream, is what clients asking for it are answered with until the
// image is stored.
type pull struct {
	ready chan struct{} // closed once m or err is set
	m     *Manifest
	err   error
}

// Fetch serves a pull of the manifest ref (a tag or a digest) of the
// device repository repo under a pull-through prefix that the device does
// not have: it reads the manifest from the upstream (its digest verified
// against the one asked for, or the upstream's Docker-Content-Digest) and
// returns it at once, while the image is stored in the background: its
// blobs (each spooled for the clients that ask for it meanwhile, see
// Blob), then the manifest, then the tag, last, so that nothing partial
// is ever visible in the device's storage. For an index, only the index
// is stored: each platform's image is fetched when a client asks for it,
// so a pull costs the uplink only the platform pulled. Concurrent pulls
// of the same image share one fetch. m is nil when the device has the
// manifest (serve it from storage), and matched false when repo is under
// no prefix. A stored tag is served as stored: the device does not ask
// the upstream whether it moved (a rule with a schedule keeps tags
// current).
func (s *Syncer) Fetch(ctx context.Context, repo, ref string) (matched bool, m *Manifest, err error) {
	p, upRepo := s.cfg.PullThroughOf(repo)
	if p == nil {
		return false, nil, nil
	}
	dst := s.dest.Registry.Repo(repo)
	key := repo + "@" + ref
	s.pullMu.Lock()
	pl, ok := s.pulls[key]
	s.pullMu.Unlock()
	if !ok {
		if d, err := v1.NewHash(ref); err == nil {
			if has, _ := s.dest.Has(ctx, repo, true, d); has {
				return true, nil, nil
			}
		} else if s.tagExists(ctx, dst.Tag(ref)) {
			return true, nil, nil
		}
		if d, ok := s.down.Load(p.up.Name); ok && time.Now().Before(d.(downState).until) {
			return true, nil, fmt.Errorf("%w (tried %s ago; retried after %s)", d.(downState).err,
				time.Since(d.(downState).at).Round(time.Second), downFor)
		}
		s.pullMu.Lock()
		if pl, ok = s.pulls[key]; !ok {
			pl = &pull{ready: make(chan struct{})}
			s.pulls[key] = pl
			// The fetch outlives the request that started it: another
			// client may be waiting on it, and what arrives is kept.
			go s.pullThrough(context.WithoutCancel(ctx), p, upRepo, repo, ref, pl)
		}
		s.pullMu.Unlock()
	}
	select {
	case <-pl.ready:
	case <-ctx.Done():
		return true, nil, ctx.Err()
	}
	return true, pl.m, pl.err
}

// PullsUnderWay is how many images pull-throughs are fetching.
func (s *Syncer) PullsUnderWay() int {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	seen := map[*pull]bool{}
	for _, p := range s.pulls {
		seen[p] = true
	}
	return len(seen)
}

// pullThrough reads the manifest ref of upRepo, hands it to pl's waiters
// and stores the image.
func (s *Syncer) pullThrough(ctx context.Context, p *PullThrough, upRepo, repo, ref string, pl *pull) {
	keys := []string{repo + "@" + ref}
	var pending []*transfer
	fail := func(err error) {
		if !errors.Is(err, ErrNoRoom) { // the device's, not the upstream's
			err = upstreamError(p.up, err)
		}
		if pl.m == nil && transient(err) {
			// Unreachable (the manifest did not arrive; a blob cut
			// after it did is fetched again by the next pull): the
			// next pulls fail at once for a while instead of each
			// waiting for the network to give up.
			now := time.Now()
			s.down.Store(p.up.Name, downState{at: now, until: now.Add(downFor), err: err})
		}
		if pl.err == nil && pl.m == nil {
			pl.err = err
			close(pl.ready)
		}
	}
	defer func() {
		for _, t := range pending {
			s.unwant(t) // the copy did not need it, or failed first
		}
		s.pullMu.Lock()
		for _, k := range keys {
			if s.pulls[k] == pl {
				delete(s.pulls, k)
			}
		}
		s.pullMu.Unlock()
	}()
	c, err := s.pullClient(ctx, p.up)
	if err != nil {
		fail(err)
		return
	}
	src, dst := c.repo(upRepo), s.dest.Registry.Repo(repo)
	var srcRef name.Reference = src.Tag(ref)
	if d, err := v1.NewHash(ref); err == nil {
		srcRef = src.Digest(d.String())
	}
	// go-containerregistry checks the manifest against the digest asked
	// for, or against the upstream's Docker-Content-Digest.
	desc, err := c.puller.Get(ctx, srcRef)
	if err != nil {
		fail(fmt.Errorf("reading %s: %w", srcRef, err))
		return
	}
	if desc.MediaType.IsImage() {
		img, err := desc.Image()
		if err == nil {
			var mf *v1.Manifest
			if mf, err = img.Manifest(); err == nil {
				// Registered before clients see the manifest: their blob
				// GETs find the transfers and start them if the copy has
				// not yet.
				for _, b := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
					if len(b.URLs) > 0 || b.MediaType == types.DockerForeignLayer {
						continue
					}
					if t, _ := s.transferOf(c, src, dst, b, true); t != nil {
						t.want()
						pending = append(pending, t)
					}
				}
			}
		}
		if err != nil {
			fail(fmt.Errorf("reading %s: %w", srcRef, err))
			return
		}
		if err := s.room(ctx, repo, srcRef, pending); err != nil {
			fail(err)
			return
		}
	}
	if k := repo + "@" + desc.Digest.String(); k != keys[0] {
		s.pullMu.Lock()
		if _, ok := s.pulls[k]; !ok {
			s.pulls[k] = pl // a pull by digest after one by tag shares it
			keys = append(keys, k)
		}
		s.pullMu.Unlock()
	}
	pl.m = &Manifest{Raw: desc.Manifest, MediaType: desc.MediaType, Digest: desc.Digest}
	close(pl.ready)

	it := &Item{Rule: "pull-through " + p.Prefix, Source: src.String() + refSep(ref) + ref, Destination: repo + refSep(ref) + ref}
	j := &job{c: c, src: src, dst: dst, ref: ref, platforms: p.Platforms, referrers: p.Referrers, item: it, lazy: true, attempts: 1, pre: desc, spool: true}
	if err := s.copyImage(ctx, j); err != nil {
		fail(err)
		s.log.Warn("pull-through failed", "prefix", p.Prefix, "source", it.Source, "destination", it.Destination, "err", err)
		return
	}
	s.down.Delete(p.up.Name)
	s.log.Info("pull-through", "prefix", p.Prefix, "source", it.Source, "destination", it.Destination,
		"digest", it.Digest, "outcome", it.Outcome, "blobs", it.Blobs, "bytes", it.Bytes)
}

// room refuses a pull-through (ErrNoRoom) before its manifest is handed
// out when the device has no room for the blobs it lacks: each takes its
// size twice while it is fetched (its spool file, its copy in storage).
// A check only: each blob's spool is reserved when its fetch starts
// (begin), which is what holds when several pulls start at once.
func (s *Syncer) room(ctx context.Context, repo string, ref name.Reference, blobs []*transfer) error {
	if s.dest.Reserve == nil {
		return nil
	}
	var need int64
	for _, t := range blobs {
		if has, _ := s.dest.Has(ctx, repo, false, t.desc.Digest); !has {
			need += 2 * t.desc.Size
		}
	}
	if need == 0 {
		return nil
	}
	release, err := s.dest.Reserve("image "+ref.String(), need)
	if err != nil {
		return err
	}
	release()
	return nil
}

// downFor is how long pull-throughs fail at once after the upstream was
// found unreachable.
const downFor = 30 * time.Second

type downState struct {
	at, until time.Time
	err       error
}

func refSep(ref string) string {
	if _, err := v1.NewHash(ref); err == nil {
		return "@"
	}
	return ":"
}

// pullClient is the upstream client pull-throughs share (its token and
// connections are reused across requests).
func (s *Syncer) pullClient(ctx context.Context, u *Upstream) (*client, error) {
	if c, ok := s.clients.Load(u.Name); ok {
		return c.(*client), nil
	}
	c, err := s.client(context.WithoutCancel(ctx), u)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u, err)
	}
	got, _ := s.clients.LoadOrStore(u.Name, c)
	return got.(*client), nil
}
