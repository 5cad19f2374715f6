package agent

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TagInfo is one tag of a repository, as `edgecr ls REPO -o json` prints
// it. Size is what the tag pulls: its manifest, config and layers; for an
// index, the index and each platform's (blobs shared between platforms
// counted once).
type TagInfo struct {
	Repository string         `json:"repository"`
	Tag        string         `json:"tag"`
	Digest     string         `json:"digest"`
	MediaType  string         `json:"mediaType"`
	Size       int64          `json:"size"`
	Platforms  []PlatformInfo `json:"platforms,omitempty"`
	// Referrers counts the manifests whose subject is the tag's manifest
	// (signatures, SBOMs, attestations) by artifact type, sorted by type;
	// read through the referrers API or, where the registry has none, the
	// referrers tag schema.
	Referrers []ArtifactCount `json:"referrers,omitempty"`
}

// PlatformInfo is one manifest of an index.
type PlatformInfo struct {
	Platform  string `json:"platform"` // os/arch[/variant], "" when the index does not say
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"` // manifest + config + layers
}

// RepositoryInfo is one repository of a registry's catalog.
type RepositoryInfo struct {
	Repository string `json:"repository"`
}

// ListRepositories lists the registry's repositories (GET /v2/_catalog,
// every page). An edgecr device answers it to its admin role only: a
// push or pull client gets ErrDenied.
func (im *Images) ListRepositories(ctx context.Context, reg name.Registry) ([]RepositoryInfo, error) {
	repos, err := remote.Catalog(ctx, reg, im.options(ctx, reg.RegistryStr(), nil)...)
	if err != nil {
		if statusCode(err) == http.StatusForbidden {
			return nil, fmt.Errorf("listing the repositories of %s: %w to %s: the device lists its repositories to its admin role only", reg, ErrDenied, im.who(reg.RegistryStr()))
		}
		return nil, registryError(err, "listing the repositories of "+reg.String())
	}
	slices.Sort(repos)
	out := make([]RepositoryInfo, len(repos))
	for i, r := range repos {
		out[i] = RepositoryInfo{Repository: r}
	}
	return out, nil
}

// maxParallel bounds the manifest requests ls and rm make at once.
const maxParallel = 8

// ListTags lists the repository's tags with digest, media type and size.
// An unknown repository is ErrNotFound.
func (im *Images) ListTags(ctx context.Context, repo name.Repository) ([]TagInfo, error) {
	opts := im.options(ctx, repo.RegistryStr(), nil)
	tags, err := im.tags(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	out := make([]TagInfo, len(tags))
	sizes := &sizeCache{m: map[v1.Hash]*manifestSize{}}
	err = forEach(ctx, len(tags), func(i int) error {
		ti, err := im.describeTag(repo, tags[i], sizes, opts)
		out[i] = ti
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tags lists the repository's tags, sorted; an unknown repository is
// ErrNotFound.
func (im *Images) tags(ctx context.Context, repo name.Repository, opts []remote.Option) ([]string, error) {
	tags, err := remote.List(repo, opts...)
	if err != nil {
		if statusCode(err) == http.StatusNotFound {
			return nil, fmt.Errorf("repository %s: %w on %s", repo.RepositoryStr(), ErrNotFound, repo.RegistryStr())
		}
		return nil, registryError(err, "listing the tags of "+repo.String())
	}
	slices.Sort(tags)
	return tags, nil
}

func (im *Images) describeTag(repo name.Repository, tag string, sizes *sizeCache, opts []remote.Option) (TagInfo, error) {
	ti := TagInfo{Repository: repo.String(), Tag: tag}
	desc, err := remote.Get(repo.Tag(tag), opts...)
	if err != nil {
		return ti, registryError(err, "reading "+repo.Tag(tag).String())
	}
	ti.Digest, ti.MediaType = desc.Digest.String(), string(desc.MediaType)
	if ti.Referrers, err = countReferrers(repo, desc.Digest, opts); err != nil {
		return ti, err
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return ti, fmt.Errorf("reading %s: %w", repo.Tag(tag), err)
		}
		blobs := map[v1.Hash]int64{}
		ti.Size = desc.Size
		for _, child := range idx.Manifests {
			p := PlatformInfo{Digest: child.Digest.String(), MediaType: string(child.MediaType), Size: child.Size}
			if child.Platform != nil {
				p.Platform = child.Platform.String()
			}
			if child.MediaType.IsImage() {
				ms, err := sizes.get(repo, child.Digest, opts)
				if err != nil {
					return ti, err
				}
				p.Size = ms.total
				for h, n := range ms.blobs {
					blobs[h] = n
				}
			}
			ti.Size += child.Size
			ti.Platforms = append(ti.Platforms, p)
		}
		for _, n := range blobs {
			ti.Size += n
		}
	case desc.MediaType.IsImage():
		ms, err := parseManifestSize(desc.Manifest)
		if err != nil {
			return ti, fmt.Errorf("reading %s: %w", repo.Tag(tag), err)
		}
		ti.Size = ms.total
	default:
		ti.Size = desc.Size
	}
	return ti, nil
}

// manifestSize is an image manifest's blobs and its total: manifest,
// config and layers.
type manifestSize struct {
	total int64
	blobs map[v1.Hash]int64
}

func parseManifestSize(raw []byte) (*manifestSize, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	ms := &manifestSize{total: int64(len(raw)), blobs: map[v1.Hash]int64{m.Config.Digest: m.Config.Size}}
	// Sizes come from the registry: a negative one, or a sum past int64,
	// would print a wrong total.
	add := func(what string, n int64) error {
		if n < 0 {
			return fmt.Errorf("parsing manifest: %s has negative size %d", what, n)
		}
		if ms.total > math.MaxInt64-n {
			return fmt.Errorf("parsing manifest: its sizes add up to more than %d bytes", int64(math.MaxInt64))
		}
		ms.total += n
		return nil
	}
	if err := add("the config", m.Config.Size); err != nil {
		return nil, err
	}
	for i, l := range m.Layers {
		if err := add(fmt.Sprintf("layer %d", i), l.Size); err != nil {
			return nil, err
		}
		ms.blobs[l.Digest] = l.Size
	}
	return ms, nil
}

// sizeCache fetches each platform manifest once, however many tags share
// it.
type sizeCache struct {
	mu sync.Mutex
	m  map[v1.Hash]*manifestSize
}

func (c *sizeCache) get(repo name.Repository, h v1.Hash, opts []remote.Option) (*manifestSize, error) {
	c.mu.Lock()
	ms, ok := c.m[h]
	c.mu.Unlock()
	if ok {
		return ms, nil
	}
	ref := repo.Digest(h.String())
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, registryError(err, "reading "+ref.String())
	}
	if ms, err = parseManifestSize(desc.Manifest); err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	c.mu.Lock()
	c.m[h] = ms
	c.mu.Unlock()
	return ms, nil
}

// forEach runs f(0) … f(n-1), maxParallel at a time, and returns the
// first error; after an error, the calls not yet started are skipped.
func forEach(ctx context.Context, n int, f func(i int) error) error {
	sem := make(chan struct{}, maxParallel)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range n {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
