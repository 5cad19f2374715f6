package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/manifest/manifestlist"
	"github.com/distribution/distribution/v3/manifest/ocischema"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
)

// The image inventory of the web UI: what the registry storage holds, read
// through distribution's storage library, as the running server reads it.
//
// The work is sequential and bounded by the storage itself: every
// repository, every tag, and each distinct manifest of a repository read
// once per call (distribution refuses manifests over 4 MiB); the context is
// checked between tags. Nothing is cached between calls, so the list is
// what storage holds now, garbage collections and other processes included.
// The web UI's Images page lists from an index built with the same
// functions and kept up to date instead (imageindex.go).

// ImageRepo is one repository with its tags, sorted by tag.
type ImageRepo struct {
	Name string     `json:"name"`
	Tags []ImageTag `json:"tags"`
	// Size is what the repository's tags pull together: each distinct
	// blob (manifests included) counted once.
	Size int64 `json:"size"`
}

// ImageTag is one tag: what it points to and what it pulls.
type ImageTag struct {
	Tag       string `json:"tag"`
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
	// Size is what the tag pulls: its manifest, config and layers; for an
	// index, the index and each child's manifest, config and layers. Blobs
	// shared (between platforms, or repeated in a manifest) count once.
	Size int64 `json:"size"`
	// Platforms are the os/arch[/variant] of an index's children, in the
	// index's order, children without a platform left out; empty for a
	// single manifest.
	Platforms []string `json:"platforms,omitempty"`
	// SharedWith are the repository's other tags on the same digest.
	SharedWith []string `json:"sharedWith,omitempty"`
	// Referrers count the manifests whose subject is the tag's manifest,
	// by artifact type (images_referrers.go).
	Referrers []ReferrerCount `json:"referrers,omitempty"`
	// Err says why the tag's manifest, or a child of its index, could not
	// be read (missing, corrupt). The tag is listed anyway, with what could
	// be read: Size then leaves out what is missing.
	Err string `json:"error,omitempty"`
}

// ErrTagNotFound is DeleteTag's error for a repository or tag that does
// not exist.
var ErrTagNotFound = errors.New("no such tag")

// ErrInvalidName is the error of a repository name or tag that no image
// can have (errors.Is).
var ErrInvalidName = errors.New("invalid name")

// nameError says what is wrong with a name and is ErrInvalidName.
type nameError string

func (e nameError) Error() string        { return string(e) }
func (e nameError) Is(target error) bool { return target == ErrInvalidName }

// Images lists every repository and tag in the registry storage, sorted by
// name. Storage that does not exist yet holds no images. A manifest that
// cannot be read fails its tag (ImageTag.Err), not the list; an error is
// storage that cannot be listed.
func (s *State) Images(ctx context.Context) ([]ImageRepo, error) {
	reg, d, err := s.imageStorage(ctx)
	if err != nil {
		return nil, err
	}
	// An empty or missing storage dir: distribution's catalog walk would
	// call that an error.
	if _, err := d.Stat(ctx, path.Join(v2Root, "repositories")); err != nil {
		if isPathNotFound(err) {
			return []ImageRepo{}, nil
		}
		return nil, fmt.Errorf("listing repositories: %w", err)
	}
	names, err := repositoryNames(ctx, reg)
	if err != nil {
		return nil, err
	}
	out := make([]ImageRepo, 0, len(names))
	for _, name := range names {
		named, err := reference.WithName(name)
		if err != nil {
			// Not a name distribution would have stored, nor one a client
			// could reach: a directory someone made by hand.
			continue
		}
		r, err := describeRepository(ctx, reg, &referrersIndex{d: d}, named, nil)
		if err != nil {
			return nil, fmt.Errorf("listing images of %s: %w", name, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ImageRepo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ImageTagOf describes one tag of one repository, reading only that
// repository. A missing repository or tag is ErrTagNotFound, a name no
// image can have ErrInvalidName.
func (s *State) ImageTagOf(ctx context.Context, repo, tag string) (*ImageTag, error) {
	named, err := parseRepoTag(repo, tag)
	if err != nil {
		return nil, err
	}
	reg, _, err := s.imageStorage(ctx)
	if err != nil {
		return nil, err
	}
	r, err := listRepository(ctx, reg, named, nil)
	if err != nil {
		if isPathNotFound(err) {
			return nil, ErrTagNotFound
		}
		return nil, fmt.Errorf("listing images of %s: %w", repo, err)
	}
	for i := range r.Tags {
		if r.Tags[i].Tag == tag {
			return &r.Tags[i], nil
		}
	}
	return nil, ErrTagNotFound
}

// DeleteTag removes one tag, as DELETE /v2/<repo>/manifests/<tag> does: the
// manifest and the repository's other tags stay, and garbage collection
// reclaims the space later. A repository or tag that does not exist is
// ErrTagNotFound.
func (s *State) DeleteTag(ctx context.Context, repo, tag string) error {
	return s.DeleteTagAt(ctx, repo, tag, "")
}

// ErrTagMoved is DeleteTagAt's error when the tag no longer points to the
// digest the caller confirmed.
var ErrTagMoved = errors.New("the tag has moved to another image")

// DeleteTagAt is DeleteTag for a tag that still points to digest (any
// digest when empty): what the user confirmed is what goes.
func (s *State) DeleteTagAt(ctx context.Context, repo, tag, digest string) error {
	named, err := parseRepoTag(repo, tag)
	if err != nil {
		return fmt.Errorf("deleting tag %s:%s: %w", repo, tag, err)
	}
	reg, _, err := s.imageStorage(ctx)
	if err != nil {
		return fmt.Errorf("deleting tag %s:%s: %w", repo, tag, err)
	}
	r, err := reg.Repository(ctx, named)
	if err != nil {
		return fmt.Errorf("deleting tag %s:%s: %w", repo, tag, err)
	}
	if digest != "" {
		desc, err := r.Tags(ctx).Get(ctx, tag)
		if err != nil {
			var unknown distribution.ErrTagUnknown
			if errors.As(err, &unknown) || isPathNotFound(err) {
				err = ErrTagNotFound
			}
			return fmt.Errorf("deleting tag %s:%s: %w", repo, tag, err)
		}
		if desc.Digest.String() != digest {
			return fmt.Errorf("deleting tag %s:%s: %w (%s, not %s)", repo, tag, ErrTagMoved, desc.Digest, digest)
		}
	}
	if err := r.Tags(ctx).Untag(ctx, tag); err != nil {
		var unknown distribution.ErrTagUnknown
		if errors.As(err, &unknown) || isPathNotFound(err) {
			err = ErrTagNotFound
		}
		return fmt.Errorf("deleting tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// parseRepoTag checks a repository name and a tag taken from a request.
// The repository must match the OCI grammar the server enforces on every
// request (validRepoName) and be a name distribution accepts.
func parseRepoTag(repo, tag string) (reference.Named, error) {
	if err := validRepoName(repo); err != nil {
		return nil, nameError(err.Error())
	}
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, nameError(fmt.Sprintf("invalid repository name %q: %v", repo, err))
	}
	if !tagRE.MatchString(tag) {
		return nil, nameError(fmt.Sprintf("invalid tag %q: 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag))
	}
	return named, nil
}

// imageStorage opens the registry storage as the server does: the
// durable filesystem driver at StorageDir (durablefs.go), or the bounded
// s3 driver on the state's bucket (s3store.go), deletes enabled, no blob
// descriptor cache (registry.go says why). It does no I/O, so it is built
// per call.
func (s *State) imageStorage(ctx context.Context) (distribution.Namespace, storagedriver.StorageDriver, error) {
	st, err := openImageStorage(ctx, s, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	reg, err := storage.NewRegistry(ctx, st.d, storage.EnableDelete)
	if err != nil {
		return nil, nil, fmt.Errorf("opening registry storage %s: %w", st, err)
	}
	return reg, st.d, nil
}

func isPathNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// repositoryNames pages through distribution's catalog.
func repositoryNames(ctx context.Context, reg distribution.Namespace) ([]string, error) {
	var names []string
	buf := make([]string, 100)
	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := reg.Repositories(ctx, buf, last)
		names = append(names, buf[:n]...)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing repositories: %w", err)
		}
		last = buf[n-1]
	}
}

// describeRepository is listRepository with the referrer counts, what the
// Images page shows of one repository. Counting may write the referrers
// index of the repository (its first listing rebuilds it): refs says
// where, and whom to tell of the bytes (the quota's counter, in serve).
func describeRepository(ctx context.Context, reg distribution.Namespace, refs *referrersIndex, named reference.Named, known *manifestMemo) (ImageRepo, error) {
	r, err := listRepository(ctx, reg, named, known)
	if err == nil {
		err = addReferrerCounts(ctx, refs, &r)
	}
	return r, err
}

// listRepository describes one repository's tags. A repository with
// manifests but no tags (pushed by digest, or every tag deleted) is listed
// with none. known, when not nil, holds manifests read before (by the
// image index, imageindex.go): a manifest's content never changes under
// its digest, so only what it does not hold is read.
func listRepository(ctx context.Context, reg distribution.Namespace, named reference.Named, known *manifestMemo) (ImageRepo, error) {
	ir := ImageRepo{Name: named.Name(), Tags: []ImageTag{}}
	repo, err := reg.Repository(ctx, named)
	if err != nil {
		return ir, err
	}
	tagSvc := repo.Tags(ctx)
	tags, err := tagSvc.All(ctx)
	if err != nil {
		var unknown distribution.ErrRepositoryUnknown
		if !errors.As(err, &unknown) {
			return ir, fmt.Errorf("listing tags: %w", err)
		}
		tags = nil
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return ir, err
	}
	mc := &manifestCache{ms: ms, m: map[string]*manifestInfo{}, repo: ir.Name, known: known}
	repoBlobs := map[string]int64{}
	byDigest := map[string][]string{}
	for _, tag := range tags {
		if err := ctx.Err(); err != nil {
			return ir, err
		}
		it, blobs := describeTag(ctx, tagSvc, mc, tag)
		maps.Copy(repoBlobs, blobs)
		if it.Digest != "" {
			byDigest[it.Digest] = append(byDigest[it.Digest], it.Tag)
		}
		ir.Tags = append(ir.Tags, it)
	}
	slices.SortFunc(ir.Tags, func(a, b ImageTag) int { return strings.Compare(a.Tag, b.Tag) })
	for i := range ir.Tags {
		t := &ir.Tags[i]
		for _, other := range byDigest[t.Digest] {
			if other != t.Tag {
				t.SharedWith = append(t.SharedWith, other)
			}
		}
		slices.Sort(t.SharedWith)
	}
	ir.Size = sumSizes(repoBlobs)
	return ir, nil
}

// describeTag reads what tag points to and returns it with the blobs it
// pulls (digest -> size).
func describeTag(ctx context.Context, tags distribution.TagService, mc *manifestCache, tag string) (ImageTag, map[string]int64) {
	it := ImageTag{Tag: tag}
	desc, err := tags.Get(ctx, tag)
	if err != nil {
		it.Err = fmt.Sprintf("reading tag: %v", err)
		return it, nil
	}
	it.Digest = desc.Digest.String()
	top := mc.get(ctx, desc)
	if top.err != nil {
		it.Err = top.err.Error()
		return it, nil
	}
	it.MediaType = top.mediaType
	blobs := map[string]int64{it.Digest: top.size}
	maps.Copy(blobs, top.blobs)
	// An index: each child's manifest and blobs. A child that is itself an
	// index counts its own manifest only, as agent's `edgecr ls` does.
	for _, child := range top.children {
		p := platformOf(child)
		if p != "" {
			it.Platforms = append(it.Platforms, p)
		}
		blobs[child.Digest.String()] = child.Size
		cm := mc.get(ctx, child)
		if cm.err != nil {
			if it.Err == "" {
				if p == "" {
					p = "child"
				}
				it.Err = fmt.Sprintf("%s of the index: %v", p, cm.err)
			}
			continue
		}
		blobs[child.Digest.String()] = cm.size
		maps.Copy(blobs, cm.blobs)
	}
	it.Size = sumSizes(blobs)
	return it, blobs
}

// platformOf is an index child's os/arch[/variant], "" when the index does
// not say.
func platformOf(d distribution.Descriptor) string {
	p := d.Platform
	if p == nil || (p.OS == "" && p.Architecture == "") {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func sumSizes(blobs map[string]int64) int64 {
	var n int64
	for _, size := range blobs {
		n += size
	}
	return n
}

// manifestInfo is one manifest as read from storage.
type manifestInfo struct {
	mediaType string
	size      int64                     // of the manifest itself
	blobs     map[string]int64          // an image manifest's config and layers
	children  []distribution.Descriptor // an index's manifests
	err       error
}

// manifestCache reads each manifest of a repository once, however many
// tags and indexes refer to it.
type manifestCache struct {
	ms    distribution.ManifestService
	m     map[string]*manifestInfo
	repo  string
	known *manifestMemo // nil: none
}

func (c *manifestCache) get(ctx context.Context, desc distribution.Descriptor) *manifestInfo {
	key := desc.Digest.String()
	if mi, ok := c.m[key]; ok {
		return mi
	}
	if mi := c.known.get(c.repo, key); mi != nil {
		c.m[key] = mi
		return mi
	}
	mi := readManifest(ctx, c.ms, desc)
	c.m[key] = mi
	if mi.err == nil {
		c.known.put(c.repo, key, mi)
	}
	return mi
}

func readManifest(ctx context.Context, ms distribution.ManifestService, desc distribution.Descriptor) *manifestInfo {
	mi := &manifestInfo{}
	if err := desc.Digest.Validate(); err != nil {
		mi.err = fmt.Errorf("manifest %q: %w", desc.Digest, err)
		return mi
	}
	m, err := getManifest(ctx, ms, desc)
	if err != nil {
		mi.err = fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
		return mi
	}
	mt, payload, err := m.Payload()
	if err != nil {
		mi.err = fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
		return mi
	}
	// Distribution does not check what it reads against the digest.
	if got := desc.Digest.Algorithm().FromBytes(payload); got != desc.Digest {
		mi.err = fmt.Errorf("reading manifest %s: content does not match the digest (it hashes to %s)", desc.Digest, got)
		return mi
	}
	mi.mediaType, mi.size = mt, int64(len(payload))
	switch m.(type) {
	case *manifestlist.DeserializedManifestList, *ocischema.DeserializedImageIndex:
		mi.children = m.References()
	default:
		mi.blobs = map[string]int64{}
		for _, r := range m.References() {
			mi.blobs[r.Digest.String()] = r.Size
		}
	}
	return mi
}

// getManifest is ManifestService.Get, which panics on some malformed
// content: an OCI manifest without a mediaType that does not parse as an
// index makes distribution (v3.1.2) assert the type of a nil result.
func getManifest(ctx context.Context, ms distribution.ManifestService, desc distribution.Descriptor) (m distribution.Manifest, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("malformed manifest: %v", r)
		}
	}()
	return ms.Get(ctx, desc.Digest)
}
