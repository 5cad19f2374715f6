package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemovePlan is what `edgecr rm` is about to delete: one tag (Tag set:
// the manifest and its other tags stay, as the web UI's "delete a tag"), or
// one manifest by digest and with it every tag that points at it.
// `edgecr rm -o json` prints it, with Deleted set once done.
type RemovePlan struct {
	Reference  string `json:"reference"`  // as resolved: host:port/repo:tag or @digest
	Repository string `json:"repository"` // host:port/repo
	Digest     string `json:"digest"`
	MediaType  string `json:"mediaType"`
	// Tag is the tag removed alone (rm REPO:TAG); "" when the manifest is
	// deleted.
	Tag string `json:"tag,omitempty"`
	// Tags are every tag of the repository that points at Digest: when the
	// manifest is deleted, the registry removes them with it; when only Tag
	// is, the others keep the image.
	Tags []string `json:"tags"`
	// ReferencedBy are the tagged indexes of the repository that list
	// Digest as one of their platforms ("tag (linux/arm64)"): deleting the
	// manifest leaves them incomplete. Empty when only a tag goes.
	ReferencedBy []string `json:"referencedBy,omitempty"`
	Deleted      bool     `json:"deleted"`
}

// OtherTags are the tags of p's image other than p.Tag.
func (p *RemovePlan) OtherTags() []string {
	return slices.DeleteFunc(slices.Clone(p.Tags), func(t string) bool { return t == p.Tag })
}

// PlanRemove is the vendor's procedure up to the deletion: list the tags,
// HEAD the manifest for its Docker-Content-Digest, and find every other tag
// on that digest and every tagged index that lists it. ref is a tag or a
// digest; a tag means that tag alone unless wholeImage, which deletes the
// manifest it points at. A missing repository, tag or digest is
// ErrNotFound.
func (im *Images) PlanRemove(ctx context.Context, ref name.Reference, wholeImage bool) (*RemovePlan, error) {
	repo := ref.Context()
	opts := im.options(ctx, repo.RegistryStr(), nil)
	tags, err := im.tags(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	p := &RemovePlan{Reference: ref.String(), Repository: repo.String(), Tags: []string{}}
	if tag, ok := ref.(name.Tag); ok {
		if !slices.Contains(tags, tag.TagStr()) {
			return nil, fmt.Errorf("tag %s: %w in %s (%s)", tag.TagStr(), ErrNotFound, repo, describeTags(tags))
		}
		if !wholeImage {
			p.Tag = tag.TagStr()
		}
	}
	desc, err := im.head(ref, opts)
	if err != nil {
		if statusCode(err) == http.StatusNotFound {
			return nil, fmt.Errorf("manifest %s: %w in %s", ref.Identifier(), ErrNotFound, repo)
		}
		return nil, registryError(err, "reading "+ref.String())
	}
	p.Digest, p.MediaType = desc.Digest.String(), string(desc.MediaType)

	// Every tag's digest; the indexes among them are read for children.
	heads := make([]*v1.Descriptor, len(tags))
	err = forEach(ctx, len(tags), func(i int) error {
		d, err := im.head(repo.Tag(tags[i]), opts)
		if statusCode(err) == http.StatusNotFound {
			return nil // deleted meanwhile
		}
		if err != nil {
			return registryError(err, "reading "+repo.Tag(tags[i]).String())
		}
		heads[i] = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	err = forEach(ctx, len(tags), func(i int) error {
		d := heads[i]
		switch {
		case d == nil:
		case d.Digest == desc.Digest:
			mu.Lock()
			p.Tags = append(p.Tags, tags[i])
			mu.Unlock()
		case d.MediaType.IsIndex():
			got, err := remote.Get(repo.Digest(d.Digest.String()), opts...)
			if err != nil {
				return registryError(err, "reading "+repo.Tag(tags[i]).String())
			}
			idx, err := v1.ParseIndexManifest(bytes.NewReader(got.Manifest))
			if err != nil {
				return fmt.Errorf("reading %s: %w", repo.Tag(tags[i]), err)
			}
			for _, c := range idx.Manifests {
				if c.Digest != desc.Digest {
					continue
				}
				by := tags[i]
				if c.Platform != nil {
					by += " (" + c.Platform.String() + ")"
				}
				mu.Lock()
				p.ReferencedBy = append(p.ReferencedBy, by)
				mu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(p.Tags)
	slices.Sort(p.ReferencedBy)
	if p.Tag != "" {
		p.ReferencedBy = nil // the manifest stays: every index stays whole
	}
	return p, nil
}

// head answers a manifest's descriptor from a HEAD whose Accept names
// every manifest type go-containerregistry knows (Docker v2 manifest and
// manifest list, OCI manifest and index, and Docker schema 1), so that the
// registry answers the Docker-Content-Digest of whatever the tag holds
// rather than converting it. A registry that answers HEAD without that
// header is asked with GET.
func (im *Images) head(ref name.Reference, opts []remote.Option) (*v1.Descriptor, error) {
	desc, err := remote.Head(ref, opts...)
	if err == nil || statusCode(err) != 0 {
		return desc, err
	}
	got, gerr := remote.Get(ref, opts...)
	if gerr != nil {
		return nil, gerr
	}
	return &got.Descriptor, nil
}

// Remove carries out the plan: with Tag set, DELETE
// /v2/<repo>/manifests/<tag> (distribution untags; the manifest and its
// other tags stay), refused when the tag no longer points at the planned
// digest; else DELETE /v2/<repo>/manifests/<digest>, and with it every tag
// on it. Unreferenced blobs go at the registry's garbage collection. An
// edgecr device lets its admin role delete, no other: a push client gets
// ErrDenied.
func (im *Images) Remove(ctx context.Context, p *RemovePlan) error {
	repo, err := name.NewRepository(p.Repository)
	if err != nil {
		return fmt.Errorf("parsing repository %q: %w", p.Repository, err)
	}
	opts := im.options(ctx, repo.RegistryStr(), nil)
	var ref name.Reference = repo.Digest(p.Digest)
	if p.Tag != "" {
		tag := repo.Tag(p.Tag)
		desc, err := im.head(tag, opts)
		if err != nil {
			return registryError(err, "reading "+tag.String())
		}
		if desc.Digest.String() != p.Digest {
			return fmt.Errorf("untagging %s: the tag moved to %s since it was read (was %s): nothing deleted, run rm again", tag, desc.Digest, p.Digest)
		}
		ref = tag
	}
	err = deleteStatus(remote.Delete(ref, opts...), ref, im.who(repo.RegistryStr()))
	if err == nil {
		p.Deleted = true
	}
	return err
}

// probeDigest names no manifest: deleting it changes nothing, and the
// answer says whether this credential may delete at all.
const probeDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// CheckDelete asks the registry whether this command's credential may
// delete manifests in repo, before anything is shown or done: it DELETEs
// a digest no manifest has (404 when allowed, 403 DENIED when not). A
// refusal is ErrDenied, naming who this client is.
func (im *Images) CheckDelete(ctx context.Context, repo name.Repository) error {
	ref := repo.Digest(probeDigest)
	err := remote.Delete(ref, im.options(ctx, repo.RegistryStr(), nil)...)
	if statusCode(err) == http.StatusNotFound {
		return nil
	}
	return deleteStatus(err, repo, im.who(repo.RegistryStr()))
}

// deleteStatus classifies the answer to a DELETE of ref.
func deleteStatus(err error, ref fmt.Stringer, who string) error {
	switch statusCode(err) {
	case 0:
		if err != nil {
			return registryError(err, "deleting "+ref.String())
		}
		return nil
	case http.StatusForbidden:
		return fmt.Errorf("deleting %s: %w to %s: deleting needs the admin role on the device", ref, ErrDenied, who)
	case http.StatusMethodNotAllowed:
		return fmt.Errorf("deleting %s: the registry does not allow deletes (405)", ref)
	}
	return registryError(err, "deleting "+ref.String())
}

// describeTags is "its tags: a, b, c" (at most 10), or "it has no tags".
func describeTags(tags []string) string {
	switch {
	case len(tags) == 0:
		return "it has no tags"
	case len(tags) > 10:
		return "its tags: " + strings.Join(tags[:10], ", ") + fmt.Sprintf(", … (%d in all)", len(tags))
	}
	return "its tags: " + strings.Join(tags, ", ")
}
