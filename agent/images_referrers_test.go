package agent_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	sigType  = "application/vnd.example.signature.v1+json"
	sbomType = "application/spdx+json"
	attType  = "application/vnd.in-toto+json"
)

// attach pushes an artifact of subject to repo and returns its
// descriptor.
func attach(t *testing.T, repo name.Repository, subject v1.Descriptor, artifactType, payload string, opts []remote.Option) v1.Descriptor {
	t.Helper()
	a, err := ocitest.Artifact(subject, artifactType, types.MediaType(artifactType), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	d := descriptorOf(t, a)
	mustPush(t, repo.Digest(d.Digest.String()), a, opts)
	return d
}

func descriptorOf(t *testing.T, m interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}) v1.Descriptor {
	t.Helper()
	d, err := ocitest.Descriptor(m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// referrerDigests lists the referrers of subject in repo (through the
// API, or the tag schema where the registry has none), sorted.
func referrerDigests(t *testing.T, repo name.Repository, subject v1.Hash, opts []remote.Option) []string {
	t.Helper()
	out, err := ocitest.ReferrerDigests(repo, subject, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cp copies an index with its referrers (a signature and an SBOM of the
// index, a signature of the SBOM, an attestation of one platform's
// image) from a registry without the referrers API (the tag schema) and
// from one with it, into a device without it: they arrive with the same
// digests, and --no-referrers copies none.
func TestImagesCopyReferrers(t *testing.T) {
	for _, api := range []bool{false, true} {
		name_ := "tag schema"
		if api {
			name_ = "referrers API"
		}
		t.Run(name_, func(t *testing.T) {
			d := newFakeDevice(t)
			up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(api)))
			defer up.Close()
			upstream := strings.TrimPrefix(up.URL, "http://")
			idx, _, arm := twoPlatformIndex(t)
			srcRef, _ := name.ParseReference(upstream + "/lib/app:1")
			src := srcRef.Context()
			want := mustPush(t, srcRef, idx, nil)
			idxDesc := descriptorOf(t, idx)
			sig := attach(t, src, idxDesc, sigType, `{"sig":1}`, nil).Digest
			sbomDesc := attach(t, src, idxDesc, sbomType, `{"spdx":1}`, nil)
			sbom := sbomDesc.Digest
			sbomSig := attach(t, src, sbomDesc, sigType, `{"sig":2}`, nil).Digest
			armDigest, _ := arm.Digest()
			att := attach(t, src, descriptorOf(t, arm), attType, `{"att":1}`, nil).Digest
			if got := referrerDigests(t, src, want, nil); len(got) != 2 {
				t.Fatalf("the source lists %d referrers of the index, want 2", len(got))
			}

			im := openImages(t, imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d), agent.ImagesOptions{})
			ctx := context.Background()
			dst := d.ref(t, "mirror/app:1")
			res, err := im.Copy(ctx, srcRef, dst, agent.CopyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var copied []string
			for _, r := range res.Referrers {
				copied = append(copied, r.Digest)
			}
			slices.Sort(copied)
			all := []string{sig.String(), sbom.String(), sbomSig.String(), att.String()}
			slices.Sort(all)
			if !slices.Equal(copied, all) || res.Manifests != 3 {
				t.Fatalf("copied referrers %v (manifests %d), want %v", copied, res.Manifests, all)
			}
			if res.Blobs != 4+2*4 { // the index's 4, each artifact's config and layer
				t.Errorf("blobs %d, want 12: %+v", res.Blobs, res)
			}
			for _, r := range res.Referrers {
				if r.Digest == sbom.String() && (r.ArtifactType != sbomType || r.Subject != want.String()) {
					t.Errorf("the SBOM: %+v", r)
				}
				if r.Digest == sbomSig.String() && r.Subject != sbom.String() {
					t.Errorf("the SBOM's signature: %+v", r)
				}
			}
			dstRepo := dst.Context()
			pair := []string{sig.String(), sbom.String()}
			slices.Sort(pair)
			if got := referrerDigests(t, dstRepo, want, d.admin()); !slices.Equal(got, pair) {
				t.Errorf("referrers of the index at the destination: %v, want %v", got, pair)
			}
			if got := referrerDigests(t, dstRepo, sbom, d.admin()); !slices.Equal(got, []string{sbomSig.String()}) {
				t.Errorf("referrers of the SBOM at the destination: %v, want %s", got, sbomSig)
			}
			if got := referrerDigests(t, dstRepo, armDigest, d.admin()); !slices.Equal(got, []string{att.String()}) {
				t.Errorf("referrers of the arm64 image at the destination: %v, want %s", got, att)
			}
			for _, h := range all {
				got, err := remote.Head(dstRepo.Digest(h), d.admin()...)
				if err != nil || got.Digest.String() != h {
					t.Errorf("the referrer %s at the destination: %v %v", h, got, err)
				}
			}

			// ls counts the tag's referrers by artifact type.
			tags, err := im.ListTags(ctx, dstRepo)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(tags, func(ti agent.TagInfo) bool { return ti.Tag == "1" })
			if i < 0 || !slices.Equal(tags[i].Referrers, []agent.ArtifactCount{{ArtifactType: sbomType, Count: 1}, {ArtifactType: sigType, Count: 1}}) {
				t.Errorf("ls: %+v", tags)
			}

			// Again: everything is there, nothing is sent.
			res, err = im.Copy(ctx, srcRef, dst, agent.CopyOptions{})
			if err != nil || len(res.Referrers) != 4 || res.Copied != 0 {
				t.Errorf("second copy: %+v %v", res, err)
			}

			bare := d.ref(t, "bare/app:1")
			res, err = im.Copy(ctx, srcRef, bare, agent.CopyOptions{NoReferrers: true})
			if err != nil || len(res.Referrers) != 0 || res.Blobs != 4 {
				t.Fatalf("copy with NoReferrers: %+v %v", res, err)
			}
			if tags, err := im.ListTags(ctx, bare.Context()); err != nil || len(tags) != 1 || tags[0].Referrers != nil {
				t.Errorf("ls of the copy without referrers: %+v %v", tags, err)
			}
			if got := referrerDigests(t, bare.Context(), want, d.admin()); len(got) != 0 {
				t.Errorf("NoReferrers copied %v", got)
			}
			for _, h := range all {
				if _, err := remote.Head(bare.Context().Digest(h), d.admin()...); err == nil {
					t.Errorf("NoReferrers copied %s", h)
				}
			}
		})
	}
}
