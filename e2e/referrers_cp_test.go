package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	e2eSigType  = "application/vnd.example.signature.v1+json"
	e2eSBOMType = "application/spdx+json"
)

// attachTo pushes an artifact of subject (a signature- or SBOM-like
// manifest with subject and artifactType) to repo by digest.
func attachTo(t *testing.T, repo name.Repository, subject v1.Descriptor, artifactType, payload string, opts []remote.Option) v1.Descriptor {
	t.Helper()
	a, err := ocitest.Artifact(subject, artifactType, types.MediaType(artifactType), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	d, err := ocitest.Descriptor(a)
	if err != nil {
		t.Fatal(err)
	}
	push(t, repo.Digest(d.Digest.String()), a, opts)
	return d
}

// referrersOn lists the referrers of subject in repo through the
// device's referrers API, sorted.
func referrersOn(t *testing.T, repo name.Repository, subject v1.Hash, opts []remote.Option) []string {
	t.Helper()
	out, err := ocitest.ReferrerDigests(repo, subject, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// edgecr cp of an image with a signature and an SBOM (and a signature of
// the SBOM) between two edgecrd instances: the referrers arrive with the
// same digests and the second device's referrers API lists them;
// --no-referrers copies none; edgecr ls counts them per tag.
func TestCpReferrersBetweenDevices(t *testing.T) {
	d1 := startDevice(t, "")
	d2 := startDevice(t, "", "--name", "e2b")
	c := newClient(t)
	c.join(d1, d2)
	idx, _, _ := ociIndex(t)
	srcRef := d1.registryRef(t, "src/app:signed")
	want := push(t, srcRef, idx, d1.admin(c))
	subject, err := ocitest.Descriptor(idx)
	if err != nil {
		t.Fatal(err)
	}
	src := srcRef.Context()
	sig := attachTo(t, src, subject, e2eSigType, `{"signature":"e2e"}`, d1.admin(c))
	sbom := attachTo(t, src, subject, e2eSBOMType, `{"spdxVersion":"SPDX-2.3"}`, d1.admin(c))
	sbomSig := attachTo(t, src, sbom, e2eSigType, `{"signature":"of the sbom"}`, d1.admin(c))
	pair := []string{sig.Digest.String(), sbom.Digest.String()}
	slices.Sort(pair)
	if got := referrersOn(t, src, want, d1.admin(c)); !slices.Equal(got, pair) {
		t.Fatalf("the source lists %v, want %v", got, pair)
	}

	r := c.image("", "cp", "--root", c.root, "-o", "json", d1.info.Endpoint+"/src/app:signed", d2.info.Endpoint+"/mirror/app:signed")
	if r.code != 0 {
		t.Fatalf("cp: %s", r)
	}
	var res struct {
		Digest    string `json:"digest"`
		Manifests int    `json:"manifests"`
		Referrers []struct {
			Digest, Subject, ArtifactType string
		} `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("cp -o json: %v\n%s", err, r)
	}
	if res.Digest != want.String() || res.Manifests != 3 || len(res.Referrers) != 3 {
		t.Fatalf("cp: %s", r.stdout)
	}
	dst := d2.registryRef(t, "mirror/app:signed").Context()
	if got := referrersOn(t, dst, want, d2.admin(c)); !slices.Equal(got, pair) {
		t.Errorf("the second device lists %v as the referrers of %s, want %v", got, want, pair)
	}
	if got := referrersOn(t, dst, sbom.Digest, d2.admin(c)); !slices.Equal(got, []string{sbomSig.Digest.String()}) {
		t.Errorf("the second device lists %v as the referrers of the SBOM, want %s", got, sbomSig.Digest)
	}
	for _, d := range []v1.Descriptor{sig, sbom, sbomSig} {
		got, err := remote.Get(dst.Digest(d.Digest.String()), d2.admin(c)...)
		if err != nil || got.Digest != d.Digest || got.Size != d.Size {
			t.Errorf("the referrer %s on the second device: %v %v", d.Digest, got, err)
		}
	}

	// ls shows the tag's referrers, by artifact type.
	r = c.image("", "ls", "--root", c.root, d2.info.Endpoint+"/mirror/app")
	if r.code != 0 || !strings.Contains(r.stdout, "referrers 2: 1 "+e2eSBOMType+", 1 "+e2eSigType) {
		t.Errorf("ls:\n%s", r)
	}
	r = c.image("", "ls", "--root", c.root, "-o", "json", d2.info.Endpoint+"/mirror/app")
	var tags []struct {
		Tag       string `json:"tag"`
		Referrers []struct {
			ArtifactType string `json:"artifactType"`
			Count        int    `json:"count"`
		} `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &tags); err != nil || len(tags) != 1 || len(tags[0].Referrers) != 2 ||
		tags[0].Referrers[0].ArtifactType != e2eSBOMType || tags[0].Referrers[1].Count != 1 {
		t.Errorf("ls -o json: %v\n%s", err, r)
	}

	r = c.image("", "cp", "--root", c.root, "-o", "json", "--no-referrers", d1.info.Endpoint+"/src/app:signed", d2.info.Endpoint+"/bare/app:signed")
	if r.code != 0 || strings.Contains(r.stdout, `"referrers"`) {
		t.Fatalf("cp --no-referrers: %s", r)
	}
	bare := d2.registryRef(t, "bare/app:signed").Context()
	if got := referrersOn(t, bare, want, d2.admin(c)); len(got) != 0 {
		t.Errorf("cp --no-referrers copied %v", got)
	}
	for _, d := range []v1.Descriptor{sig, sbom, sbomSig} {
		if _, err := remote.Head(bare.Digest(d.Digest.String()), d2.admin(c)...); err == nil {
			t.Errorf("cp --no-referrers copied %s", d.Digest)
		}
	}
	r = c.image("", "ls", "--root", c.root, d2.info.Endpoint+"/bare/app")
	if r.code != 0 || strings.Contains(r.stdout, "referrers") {
		t.Errorf("ls of the copy without referrers:\n%s", r)
	}
}
