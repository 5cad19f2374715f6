package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// CopyOptions are the inputs of Copy.
type CopyOptions struct {
	// Platform, when set, copies only that platform's image of an index
	// (os/arch[/variant]); nil copies everything, an index whole.
	Platform *v1.Platform
	// Progress, when set, is called (from one goroutine) as bytes move:
	// done counts blobs found already at the destination too.
	Progress func(done, total int64)
	// NoReferrers skips the referrers (signatures, SBOMs, attestations):
	// by default they are copied with the image, recursively.
	NoReferrers bool
}

// CopyResult is what Copy did; `edgecr cp -o json` prints it.
type CopyResult struct {
	Source      string   `json:"source"`
	Destination string   `json:"destination"`
	Digest      string   `json:"digest"` // of what was written: SRC's, or the platform's manifest
	MediaType   string   `json:"mediaType"`
	Platforms   []string `json:"platforms,omitempty"`
	Manifests   int      `json:"manifests"`
	// Blobs and Bytes are the distinct configs and layers of what was
	// copied; each was Copied (uploaded), Mounted (from another repository
	// of the destination) or Skipped (the destination had it).
	Blobs        int     `json:"blobs"`
	Bytes        int64   `json:"bytes"`
	Copied       int     `json:"copied"`
	CopiedBytes  int64   `json:"copiedBytes"`
	Mounted      int     `json:"mounted"`
	Skipped      int     `json:"skipped"`
	SkippedBytes int64   `json:"skippedBytes"`
	Seconds      float64 `json:"seconds"`
	// Referrers are the manifests copied because their subject was: of
	// what was written, of an index's manifests, or of another referrer.
	// Manifests does not count them; Blobs and Bytes include their blobs.
	Referrers []ReferrerInfo `json:"referrers,omitempty"`
}

// Copy copies the image or index src to dst, from any registry to any
// registry (go-containerregistry's remote.Get, then a Pusher): the
// manifests are copied byte for byte, so an index keeps its digest; a blob
// the destination has is not sent (a HEAD says so, or the destination
// already has the manifest that lists it). With a platform, only that
// image of an index is copied. The credentials of dst (or the override)
// must allow pushing: on an edgecr device, the push role.
func (im *Images) Copy(ctx context.Context, src, dst name.Reference, o CopyOptions) (*CopyResult, error) {
	start := time.Now()
	obs := &copyObserver{host: strings.ToLower(dst.Context().RegistryStr()), copied: map[string]bool{}, mounted: map[string]bool{}}
	opts := im.options(ctx, dst.Context().RegistryStr(), obs.observe)
	getOpts := opts
	if o.Platform != nil {
		getOpts = append(slices.Clone(opts), remote.WithPlatform(*o.Platform))
	}
	desc, err := remote.Get(src, getOpts...)
	if err != nil {
		if statusCode(err) == http.StatusNotFound {
			return nil, fmt.Errorf("reading %s: %w", src, ErrNotFound)
		}
		return nil, registryError(err, "reading "+src.String())
	}

	res := &CopyResult{Source: src.String(), Destination: dst.String()}
	inv := &inventory{blobs: map[v1.Hash]int64{}}
	var (
		t      remote.Taggable
		digest v1.Hash
	)
	switch {
	case o.Platform != nil:
		img, err := platformImage(desc, *o.Platform, src)
		if err != nil {
			return nil, err
		}
		if err := inv.addImage(img, o.Platform.String()); err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		mt, _ := img.MediaType()
		if digest, err = img.Digest(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		t, res.MediaType = img, string(mt)
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err == nil {
			err = inv.addIndex(idx)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		t, digest, res.MediaType = desc, desc.Digest, string(desc.MediaType)
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err == nil {
			err = inv.addImage(img, "")
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		t, digest, res.MediaType = desc, desc.Digest, string(desc.MediaType)
	default:
		return nil, fmt.Errorf("copying %s: its media type %s is neither an image nor an index", src, desc.MediaType)
	}
	res.Digest, res.Platforms, res.Manifests = digest.String(), inv.platforms, inv.manifests

	var refs []referrer
	if !o.NoReferrers {
		roots := []v1.Hash{digest}
		if o.Platform == nil && desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			var children []v1.Hash
			if err == nil {
				children, err = manifestDigests(idx)
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", src, err)
			}
			roots = append(roots, children...)
		}
		if refs, err = collectReferrers(src.Context(), roots, inv, opts); err != nil {
			return nil, err
		}
	}

	pushOpts := opts
	var progressDone chan struct{}
	var updates chan v1.Update
	if o.Progress != nil {
		updates = make(chan v1.Update, 64)
		progressDone = make(chan struct{})
		total := inv.total()
		go func() {
			defer close(progressDone)
			for u := range updates {
				if u.Error == nil {
					o.Progress(u.Complete, max(u.Total, total))
				}
			}
		}()
		pushOpts = append(slices.Clone(opts), remote.WithProgress(updates))
	}
	pusher, err := remote.NewPusher(pushOpts...)
	if err == nil {
		err = pusher.Push(ctx, dst, t)
	}
	for _, r := range refs {
		if err != nil {
			break
		}
		err = pusher.Push(ctx, dst.Context().Digest(r.info.Digest), r.desc)
		res.Referrers = append(res.Referrers, r.info)
	}
	if updates != nil {
		close(updates) // every send is done once Push returned
		<-progressDone
	}
	if err != nil {
		if statusCode(err) == http.StatusForbidden {
			return nil, fmt.Errorf("pushing to %s: %w to %s%s", dst, ErrDenied, im.who(dst.Context().RegistryStr()), errMessage(err))
		}
		return nil, registryError(err, "pushing to "+dst.String())
	}
	got, err := remote.Head(dst, opts...)
	if err != nil {
		return nil, registryError(err, "checking "+dst.String())
	}
	if got.Digest != digest {
		return nil, fmt.Errorf("checking %s: it has digest %s, want %s", dst, got.Digest, digest)
	}

	for h, n := range inv.blobs {
		res.Blobs++
		res.Bytes += n
		switch {
		case obs.was(obs.copied, h):
			res.Copied++
			res.CopiedBytes += n
		case obs.was(obs.mounted, h):
			res.Mounted++
		default:
			res.Skipped++
			res.SkippedBytes += n
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// errMessage is ": <the registry's messages>" for a registry error, or "".
func errMessage(err error) string {
	s := ""
	if te := asTransportError(err); te != nil {
		s = diagnostics(te)
	}
	if s == "" {
		return ""
	}
	return ":" + strings.TrimSuffix(strings.TrimPrefix(s, " ("), ")")
}

// platformImage is the image of desc for platform p: the index's child
// for p, or desc itself when it is an image of that platform.
func platformImage(desc *remote.Descriptor, p v1.Platform, src name.Reference) (v1.Image, error) {
	if desc.MediaType.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		var have []string
		found := false
		for _, c := range idx.Manifests {
			if c.Platform == nil {
				continue
			}
			have = append(have, c.Platform.String())
			found = found || c.Platform.Satisfies(p)
		}
		if !found {
			it := "its manifests name no platform"
			if len(have) > 0 {
				it = "it has " + strings.Join(have, ", ")
			}
			return nil, notFound(fmt.Sprintf("%s has no %s image (%s)", src, p, it))
		}
		img, err := desc.Image() // the child for p (remote.WithPlatform)
		if err != nil {
			return nil, fmt.Errorf("reading the %s image of %s: %w", p, src, err)
		}
		return img, nil
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("copying %s: its media type %s is neither an image nor an index", src, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", src, err)
	}
	if have := cfg.Platform(); have != nil && have.OS != "" && !have.Satisfies(p) {
		return nil, notFound(fmt.Sprintf("%s is a single %s image, not %s", src, have, p))
	}
	return img, nil
}

// inventory is what a copy covers: its manifests and distinct blobs.
type inventory struct {
	blobs         map[v1.Hash]int64
	manifests     int
	manifestBytes int64
	platforms     []string
}

func (inv *inventory) total() int64 {
	n := inv.manifestBytes
	for _, b := range inv.blobs {
		n += b
	}
	return n
}

func (inv *inventory) addImage(img v1.Image, platform string) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	inv.manifests++
	inv.manifestBytes += size
	inv.blobs[m.Config.Digest] = m.Config.Size
	for _, l := range m.Layers {
		if l.MediaType.IsDistributable() {
			inv.blobs[l.Digest] = l.Size
		}
	}
	if platform != "" {
		inv.platforms = append(inv.platforms, platform)
	}
	return nil
}

func (inv *inventory) addIndex(idx v1.ImageIndex) error {
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	size, err := idx.Size()
	if err != nil {
		return err
	}
	inv.manifests++
	inv.manifestBytes += size
	for _, c := range m.Manifests {
		switch {
		case c.MediaType.IsIndex():
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return err
			}
			if err := inv.addIndex(child); err != nil {
				return err
			}
		case c.MediaType.IsImage():
			child, err := idx.Image(c.Digest)
			if err != nil {
				return err
			}
			p := "unknown"
			if c.Platform != nil {
				p = c.Platform.String()
			}
			if err := inv.addImage(child, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyObserver watches the destination's answers for the blobs a push
// uploaded (PUT …/blobs/uploads/…?digest=, 201) and mounted (POST
// …/blobs/uploads/?mount=, 201); the others it had.
type copyObserver struct {
	host            string
	mu              sync.Mutex
	copied, mounted map[string]bool
}

func (c *copyObserver) observe(req *http.Request, resp *http.Response) {
	if resp.StatusCode != http.StatusCreated || !strings.EqualFold(req.URL.Host, c.host) || !strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return
	}
	q := req.URL.Query()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Method {
	case http.MethodPut:
		if d := q.Get("digest"); d != "" {
			c.copied[d] = true
		}
	case http.MethodPost:
		if d := q.Get("mount"); d != "" {
			c.mounted[d] = true
		}
	}
}

func (c *copyObserver) was(set map[string]bool, h v1.Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return set[h.String()]
}
