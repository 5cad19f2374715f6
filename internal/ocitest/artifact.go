// Package ocitest builds OCI artifacts for tests: manifests with a
// subject and an artifactType, as cosign, notation and oras attach them.
package ocitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Artifact is an OCI image manifest with artifactType and subject set and
// one layer (payload, of media type layerType): a signature, an SBOM or
// an attestation of subject.
func Artifact(subject v1.Descriptor, artifactType string, layerType types.MediaType, payload []byte) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, static.NewLayer(payload, layerType))
	if err != nil {
		return nil, fmt.Errorf("building an artifact of %s: %w", subject.Digest, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("building an artifact of %s: %w", subject.Digest, err)
	}
	m = m.DeepCopy()
	m.ArtifactType = artifactType
	subject = *subject.DeepCopy()
	subject.Platform = nil
	m.Subject = &subject
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("building an artifact of %s: %w", subject.Digest, err)
	}
	return &rawImage{Image: img, raw: raw, m: m}, nil
}

// Descriptor is the descriptor of an image or index, to name it as a
// subject.
func Descriptor(m interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}) (v1.Descriptor, error) {
	h, err := m.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := m.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := m.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: n}, nil
}

// rawImage is an image whose manifest is raw (what mutate cannot set).
type rawImage struct {
	v1.Image
	raw []byte
	m   *v1.Manifest
}

func (r *rawImage) RawManifest() ([]byte, error)    { return r.raw, nil }
func (r *rawImage) Manifest() (*v1.Manifest, error) { return r.m.DeepCopy(), nil }
func (r *rawImage) Size() (int64, error)            { return int64(len(r.raw)), nil }
func (r *rawImage) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(r.raw))
	return h, err
}

// ReferrerDigests lists the digests of the referrers of subject in repo,
// sorted (through the referrers API, or the tag schema where the
// registry has none: remote.Referrers).
func ReferrerDigests(repo name.Repository, subject v1.Hash, opts ...remote.Option) ([]string, error) {
	idx, err := remote.Referrers(repo.Digest(subject.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s in %s: %w", subject, repo, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the referrers of %s in %s: %w", subject, repo, err)
	}
	out := make([]string, 0, len(m.Manifests))
	for _, d := range m.Manifests {
		out = append(out, d.Digest.String())
	}
	slices.Sort(out)
	return out, nil
}
