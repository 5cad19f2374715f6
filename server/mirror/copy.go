package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Destination is the registry synced images are written to: on the
// device, its own registry in process (server/sync.go).
type Destination struct {
	Registry name.Registry
	Options  []remote.Option // transport and auth
	// Has reports whether repo holds the blob or manifest d, without
	// counting as a pull.
	Has func(ctx context.Context, repo string, manifest bool, d v1.Hash) (bool, error)
	// SpoolDir holds the blobs pull-throughs are fetching while clients
	// read them (stream.go); "": the system's temporary directory.
	SpoolDir string
	// Reserve, when set, sets n bytes aside for what (a blob spooled, or
	// a pull-through's image: its spool and its copy in storage) or
	// refuses with an error wrapping ErrNoRoom; release gives them back.
	// A blob's spool reservation is held until its spool file is removed.
	Reserve func(what string, n int64) (release func(), err error)
}

// ErrNoRoom: a pull-through was refused, the device has no room for it
// (its storage quota, or the spool's disk).
var ErrNoRoom = errors.New("no room for the pull-through")

// Syncer runs rules and pull-throughs against a destination.
type Syncer struct {
	cfg  *Config
	dest Destination
	log  *slog.Logger

	// Rate is the default bandwidth per upstream (bytes/s; <= 0 none);
	// an upstream's rate: overrides it.
	Rate int64
	// Attempts and Backoff shape retries of one blob or manifest: the
	// n-th retry waits Backoff·2ⁿ⁻¹, ±50 % jitter. Zero: 4 and 1 s.
	Attempts int
	Backoff  time.Duration
	// Jobs is how many blobs of one image move at once (zero: 4).
	Jobs int
	// Stall ends a transfer from the upstream that receives nothing for
	// that long (zero: 30 s); it then counts as a failed attempt.
	Stall time.Duration
	// Wrap, when set, wraps every upstream transport (tests count and cut
	// requests with it).
	Wrap func(http.RoundTripper) http.RoundTripper

	stats     map[string]*Stats // per upstream name
	pusher    *remote.Pusher
	transfers sync.Map // destination repo@digest → *transfer: one per blob at a time (stream.go)
	refused   sync.Map // destination repo@digest → error (ErrNoRoom) of its last transfer, for its clients
	pullMu    sync.Mutex
	pulls     map[string]*pull // device repo@ref → the pull-through under way (pullthrough.go)
	clients   sync.Map         // upstream name → *client, for pull-through
	down      sync.Map         // upstream name → downState: unreachable lately

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter // upstream name → bandwidth limit (nil: none)
}

// New prepares a Syncer; nothing is contacted until a run.
func New(cfg *Config, dest Destination, log *slog.Logger) (*Syncer, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// Retries are ours (retryFor), which read the source again.
	p, err := remote.NewPusher(append(slices.Clone(dest.Options), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))...)
	if err != nil {
		return nil, fmt.Errorf("preparing the sync destination: %w", err)
	}
	s := &Syncer{cfg: cfg, dest: dest, log: log, pusher: p, stats: map[string]*Stats{}, pulls: map[string]*pull{}, limiters: map[string]*rate.Limiter{}}
	for _, u := range cfg.Upstreams {
		s.stats[u.Name] = &Stats{}
	}
	return s, nil
}

// Config is the configuration the Syncer runs.
func (s *Syncer) Config() *Config { return s.cfg }

// UpstreamRequests is how many requests went to the named upstream.
func (s *Syncer) UpstreamRequests(upstream string) int64 {
	if st := s.stats[upstream]; st != nil {
		return st.Requests.Load()
	}
	return 0
}

func (s *Syncer) client(ctx context.Context, u *Upstream) (*client, error) {
	stall := s.Stall
	if stall == 0 {
		stall = 30 * time.Second
	}
	s.limMu.Lock()
	lim, ok := s.limiters[u.Name]
	if !ok {
		lim = newLimiter(u, s.Rate) // one per upstream: sync runs and pull-throughs share it
		s.limiters[u.Name] = lim
	}
	s.limMu.Unlock()
	return newClient(ctx, u, lim, stall, s.stats[u.Name], s.Wrap)
}

// job is one image to bring over: a manifest of an upstream repository,
// by tag (then tagged last on the device) or by digest.
type job struct {
	c         *client
	src       name.Repository
	dst       name.Repository
	ref       string // tag or digest
	platforms []string
	referrers bool
	item      *Item
	// lazy copies an index without its children (pull-through: each is
	// fetched when a client asks for it).
	lazy bool
	// attempts bounds retries (0: the Syncer's); a pull-through, with a
	// client waiting (that retries itself), tries once.
	attempts int
	// pre is the manifest of ref, already read (a pull-through answered
	// the client with it); nil: read it.
	pre *remote.Descriptor
	// spool: blob transfers are spooled for clients to follow.
	spool bool
}

// copyImage brings one image (or index) over: blobs, then child
// manifests, then the manifest by digest, then its referrers, then (for
// a tag) the tag, last, so that no tag names anything incomplete.
func (s *Syncer) copyImage(ctx context.Context, j *job) error {
	var srcRef name.Reference = j.src.Tag(j.ref)
	tagged := true
	if d, err := v1.NewHash(j.ref); err == nil {
		srcRef, tagged = j.src.Digest(d.String()), false
	}
	var head *v1.Descriptor
	if j.pre != nil {
		head = &j.pre.Descriptor
	} else if err := s.retryFor(ctx, j.attempts, "reading "+srcRef.String(), func() error {
		var err error
		head, err = j.c.puller.Head(ctx, srcRef)
		return err
	}); err != nil {
		return err
	}
	j.item.Digest = head.Digest.String()
	if has, _ := s.dest.Has(ctx, j.dst.RepositoryStr(), true, head.Digest); has && (!tagged || s.tagIs(ctx, j.dst.Tag(j.ref), head.Digest)) {
		j.item.Outcome = OutcomeSkipped
		if j.referrers && !j.item.dryRun {
			// Signatures are often added after the image: look again.
			return s.copyReferrers(ctx, j, head.Digest)
		}
		return nil
	}
	if j.item.dryRun {
		j.item.Outcome = OutcomeWouldCopy
		return nil
	}
	desc, err := s.tree(ctx, j, head.Digest, 0)
	if err != nil {
		return err
	}
	if j.referrers {
		if err := s.copyReferrers(ctx, j, head.Digest); err != nil {
			return err
		}
	}
	if tagged {
		if err := s.retryFor(ctx, j.attempts, "tagging "+j.dst.Tag(j.ref).String(), func() error {
			return s.pusher.Push(ctx, j.dst.Tag(j.ref), desc)
		}); err != nil {
			return err
		}
	}
	j.item.Outcome = OutcomeCopied
	return nil
}

func (s *Syncer) tagExists(ctx context.Context, tag name.Tag) bool {
	_, err := remote.Head(tag, append(slices.Clone(s.dest.Options), remote.WithContext(ctx))...)
	return err == nil
}

// tagIs reports whether the destination's tag already names d.
func (s *Syncer) tagIs(ctx context.Context, tag name.Tag, d v1.Hash) bool {
	got, err := remote.Head(tag, append(slices.Clone(s.dest.Options), remote.WithContext(ctx))...)
	return err == nil && got.Digest == d
}

// tree copies the manifest d of j.src with everything it references that
// the destination lacks, and returns it, written by digest.
func (s *Syncer) tree(ctx context.Context, j *job, d v1.Hash, depth int) (remote.Taggable, error) {
	if depth > 4 {
		return nil, fmt.Errorf("copying %s: indexes nested too deep", j.src.Digest(d.String()))
	}
	ref := j.src.Digest(d.String())
	var desc *remote.Descriptor
	if j.pre != nil && j.pre.Digest == d {
		desc = j.pre
	} else if err := s.retryFor(ctx, j.attempts, "reading "+ref.String(), func() error {
		var err error
		desc, err = j.c.puller.Get(ctx, ref)
		return err
	}); err != nil {
		return nil, err
	}
	if has, _ := s.dest.Has(ctx, j.dst.RepositoryStr(), true, d); has {
		return rawManifest{raw: desc.Manifest, mt: desc.MediaType}, nil
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		for _, m := range im.Manifests {
			if j.lazy && depth == 0 {
				break
			}
			if !m.MediaType.IsImage() && !m.MediaType.IsIndex() {
				continue
			}
			if m.MediaType.IsImage() && !wantPlatform(j.platforms, m.Platform) {
				j.item.filtered++
				continue
			}
			if _, err := s.tree(ctx, j, m.Digest, depth+1); err != nil {
				return nil, err
			}
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
		// After a failure no further blob starts, but those under way
		// finish: what arrived is kept, and the next run resumes from it.
		var g errgroup.Group
		var failed atomic.Bool
		g.SetLimit(max(s.Jobs, 1))
		if s.Jobs == 0 {
			g.SetLimit(4)
		}
		for _, b := range blobs {
			if len(b.URLs) > 0 || b.MediaType == types.DockerForeignLayer {
				continue // a non-distributable layer lives at its URLs
			}
			g.Go(func() error {
				if failed.Load() {
					return nil
				}
				err := s.blob(ctx, j, b)
				if err != nil {
					failed.Store(true)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("copying %s: its media type %s is neither an image nor an index", ref, desc.MediaType)
	}
	m := rawManifest{raw: desc.Manifest, mt: desc.MediaType}
	if err := s.retryFor(ctx, j.attempts, "writing "+j.dst.Digest(d.String()).String(), func() error {
		return s.pusher.Push(ctx, j.dst.Digest(d.String()), m)
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// rawManifest is a manifest as bytes: pushing it writes only it (a
// remote.Descriptor would make the pusher walk and write its children,
// the platform filter notwithstanding).
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// blob copies one blob unless the destination repository has it; a
// transfer of the same blob into the same repository already under way
// (another rule, a pull-through) is waited for, not repeated.
func (s *Syncer) blob(ctx context.Context, j *job, b v1.Descriptor) error {
	for {
		t, _ := s.transferOf(j.c, j.src, j.dst, b, j.spool)
		s.begin(ctx, t, j.attempts)
		select {
		case <-t.done:
		case <-ctx.Done():
			return fmt.Errorf("copying blob %s: %w", t.src, ctx.Err())
		}
		if errors.Is(t.err, errDropped) {
			continue
		}
		if t.err != nil {
			return t.err
		}
		j.item.addBlob(b.Size, t.copied && t.counted.CompareAndSwap(false, true))
		return nil
	}
}

// sizedLayer answers Size and MediaType from the manifest's descriptor,
// so that the upload does not cost the upstream a HEAD.
type sizedLayer struct {
	v1.Layer
	size int64
	mt   types.MediaType
}

func (l *sizedLayer) Size() (int64, error)                { return l.size, nil }
func (l *sizedLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// copyReferrers copies the referrers of subject (and theirs), each by
// digest, after their subject.
func (s *Syncer) copyReferrers(ctx context.Context, j *job, subject v1.Hash) error {
	seen := map[v1.Hash]bool{subject: true}
	queue := []v1.Hash{subject}
	for len(queue) > 0 {
		sub := queue[0]
		queue = queue[1:]
		var idx v1.ImageIndex
		ref := j.src.Digest(sub.String())
		if err := s.retryFor(ctx, j.attempts, "listing the referrers of "+ref.String(), func() error {
			var err error
			idx, err = remote.Referrers(ref, remote.Reuse(j.c.puller), remote.WithContext(ctx))
			return err
		}); err != nil {
			return err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return fmt.Errorf("listing the referrers of %s: %w", ref, err)
		}
		for _, d := range im.Manifests {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			if _, err := s.tree(ctx, j, d.Digest, 0); err != nil {
				return err
			}
			j.item.Referrers++
			queue = append(queue, d.Digest)
		}
	}
	return nil
}

// retry runs f until it succeeds, fails for good, or the attempts run
// out, waiting between attempts with exponential backoff and jitter.
func (s *Syncer) retry(ctx context.Context, doing string, f func() error) error {
	return s.retryFor(ctx, 0, doing, f)
}

// retryFor is retry with at most attempts attempts (0: s.Attempts).
func (s *Syncer) retryFor(ctx context.Context, attempts int, doing string, f func() error) error {
	wait := s.Backoff
	if attempts == 0 || (s.Attempts > 0 && s.Attempts < attempts) {
		attempts = s.Attempts
	}
	if attempts == 0 {
		attempts = 4
	}
	if wait == 0 {
		wait = time.Second
	}
	var err error
	for i := range attempts {
		if err = f(); err == nil || !transient(err) || i == attempts-1 {
			break
		}
		d := wait<<i/2 + rand.N(wait<<i)
		s.log.Info("sync retrying", "doing", doing, "in", d, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", doing, ctx.Err())
		case <-time.After(d):
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
}

// transient reports whether an error may pass on a retry: the network, a
// 5xx or a 429; not a refusal (401, 403), an absence (404), a certificate
// the upstream's CA does not vouch for, or the end of ctx.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoRoom) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	return !isCertError(err)
}
