package mirror

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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

// Fetch brings the manifest ref (a tag or a digest) of the device
// repository repo from the upstream of its pull-through prefix, unless the
// device has it: with its blobs, for an image; the index alone, for an
// index (each platform's image is fetched when a client asks for it, so a
// pull costs the uplink only the platform pulled). Concurrent calls for
// the same image share one fetch, and blob transfers are shared as in a
// sync run. A stored tag is served as stored: the device does not ask
// the upstream whether it moved (a rule with a schedule keeps tags
// current). matched is false when repo is under no prefix.
func (s *Syncer) Fetch(ctx context.Context, repo, ref string) (matched bool, err error) {
	p, upRepo := s.cfg.PullThroughOf(repo)
	if p == nil {
		return false, nil
	}
	dst := s.dest.Registry.Repo(repo)
	if d, err := v1.NewHash(ref); err == nil {
		if has, _ := s.dest.Has(ctx, repo, true, d); has {
			return true, nil
		}
	} else if s.tagExists(ctx, dst.Tag(ref)) {
		return true, nil
	}
	if d, ok := s.down.Load(p.up.Name); ok && time.Now().Before(d.(downState).until) {
		return true, fmt.Errorf("%w (tried %s ago; retried after %s)", d.(downState).err,
			time.Since(d.(downState).at).Round(time.Second), downFor)
	}
	_, err, _ = s.images.Do(repo+"@"+ref, func() (any, error) {
		c, err := s.pullClient(ctx, p.up)
		if err != nil {
			return nil, err
		}
		it := &Item{Rule: "pull-through " + p.Prefix, Source: c.repo(upRepo).String() + refSep(ref) + ref, Destination: repo + refSep(ref) + ref}
		j := &job{c: c, src: c.repo(upRepo), dst: dst, ref: ref, platforms: p.Platforms, referrers: p.Referrers, item: it, lazy: true, attempts: 1}
		// The fetch outlives the request that started it: another client
		// may be waiting on it, and what has arrived is kept.
		if err := s.copyImage(context.WithoutCancel(ctx), j); err != nil {
			err = upstreamError(p.up, err)
			if transient(err) {
				// Unreachable: the next pulls fail at once for a while
				// instead of each waiting for the network to give up.
				now := time.Now()
				s.down.Store(p.up.Name, downState{at: now, until: now.Add(downFor), err: err})
			}
			return nil, err
		}
		s.down.Delete(p.up.Name)
		s.log.Info("pull-through", "prefix", p.Prefix, "source", it.Source, "destination", it.Destination,
			"digest", it.Digest, "outcome", it.Outcome, "blobs", it.Blobs, "bytes", it.Bytes)
		return nil, nil
	})
	return true, err
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
