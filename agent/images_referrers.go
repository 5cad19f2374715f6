package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ReferrerInfo is one referrer cp copied: a manifest whose subject is the
// copied image (or one of its manifests, or another referrer).
type ReferrerInfo struct {
	Digest       string `json:"digest"`
	Subject      string `json:"subject"`
	ArtifactType string `json:"artifactType,omitempty"`
	MediaType    string `json:"mediaType"`
}

// ArtifactCount is how many referrers of one artifact type a tag has.
type ArtifactCount struct {
	ArtifactType string `json:"artifactType"` // "" when the referrer names none
	Count        int    `json:"count"`
}

// referrer is a referrer found on the source, ready to push.
type referrer struct {
	info ReferrerInfo
	desc *remote.Descriptor
}

// referrersOf lists the referrers of subject in repo: through the
// registry's referrers API (GET /v2/<name>/referrers/<digest>) or, where
// the registry has none, the referrers tag schema (sha256-<hex>),
// which remote.Referrers falls back to.
func referrersOf(repo name.Repository, subject v1.Hash, opts []remote.Option) ([]v1.Descriptor, error) {
	ref := repo.Digest(subject.String())
	idx, err := remote.Referrers(ref, opts...)
	if err != nil {
		return nil, registryError(err, "listing the referrers of "+ref.String())
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s: %w", ref, err)
	}
	return m.Manifests, nil
}

// collectReferrers finds every referrer of roots in repo, recursively
// (the referrers of a referrer too), breadth first, each once: a subject
// comes before its referrers, so a registry that checks subjects sees
// them in order. A referrer the listing names but the registry no longer
// has (a stale entry of a tag-schema index) is left out. Each is added to
// inv.
func collectReferrers(repo name.Repository, roots []v1.Hash, inv *inventory, opts []remote.Option) ([]referrer, error) {
	seen := map[v1.Hash]bool{}
	for _, r := range roots {
		seen[r] = true
	}
	var out []referrer
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		subject := queue[0]
		queue = queue[1:]
		descs, err := referrersOf(repo, subject, opts)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			ref := repo.Digest(d.Digest.String())
			desc, err := remote.Get(ref, opts...)
			if err != nil {
				if statusCode(err) == http.StatusNotFound {
					continue
				}
				return nil, registryError(err, "reading the referrer "+ref.String())
			}
			switch {
			case desc.MediaType.IsIndex():
				idx, err := desc.ImageIndex()
				if err == nil {
					err = inv.addIndex(idx)
				}
				if err != nil {
					return nil, fmt.Errorf("reading the referrer %s: %w", ref, err)
				}
			case desc.MediaType.IsImage():
				img, err := desc.Image()
				if err == nil {
					err = inv.addImage(img, "")
				}
				if err != nil {
					return nil, fmt.Errorf("reading the referrer %s: %w", ref, err)
				}
			default:
				return nil, fmt.Errorf("copying the referrer %s of %s: its media type %s is neither an image nor an index", ref, subject, desc.MediaType)
			}
			out = append(out, referrer{
				info: ReferrerInfo{Digest: d.Digest.String(), Subject: subject.String(), ArtifactType: artifactType(d, desc.Manifest), MediaType: string(desc.MediaType)},
				desc: desc,
			})
			queue = append(queue, d.Digest)
		}
	}
	return out, nil
}

// artifactType is a referrer's artifact type: its manifest's
// artifactType, else the listing's, else the manifest's config media type
// (as the distribution-spec fills in the referrers listing).
func artifactType(d v1.Descriptor, raw []byte) string {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	switch {
	case err == nil && m.ArtifactType != "":
		return m.ArtifactType
	case d.ArtifactType != "":
		return d.ArtifactType
	case err == nil:
		return string(m.Config.MediaType)
	}
	return ""
}

// manifestDigests is the digest of every manifest an index names, at
// any depth.
func manifestDigests(idx v1.ImageIndex) ([]v1.Hash, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []v1.Hash
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
		if c.MediaType.IsIndex() {
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return nil, err
			}
			more, err := manifestDigests(child)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
	}
	return out, nil
}

// countReferrers counts the referrers of subject by artifact type,
// sorted by type.
func countReferrers(repo name.Repository, subject v1.Hash, opts []remote.Option) ([]ArtifactCount, error) {
	descs, err := referrersOf(repo, subject, opts)
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, d := range descs {
		n[d.ArtifactType]++
	}
	var out []ArtifactCount
	for t, c := range n {
		out = append(out, ArtifactCount{ArtifactType: t, Count: c})
	}
	slices.SortFunc(out, func(a, b ArtifactCount) int { return strings.Compare(a.ArtifactType, b.ArtifactType) })
	return out, nil
}
