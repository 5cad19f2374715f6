package server

import (
	"context"
	"html"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/internal/ocitest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	testSigType  = "application/vnd.example.signature.v1+json"
	testSBOMType = "application/spdx+json"
)

// attachArtifact pushes an artifact of subject (artifactType, one layer
// holding payload) to repo by digest.
func (ts *testServer) attachArtifact(t *testing.T, repo string, subject v1.Descriptor, artifactType, payload string) v1.Descriptor {
	t.Helper()
	a, err := ocitest.Artifact(subject, artifactType, types.MediaType(artifactType), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	d, err := ocitest.Descriptor(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ts.ref(repo+"@"+d.Digest.String()), a, ts.admin()...); err != nil {
		t.Fatalf("pushing the %s artifact of %s: %v", artifactType, subject.Digest, err)
	}
	return d
}

// signAndSBOM attaches a signature and an SBOM to img in repo, and a
// signature to the SBOM (a referrer of a referrer, not of the tag).
func (ts *testServer) signAndSBOM(t *testing.T, repo string, img v1.Image) (sig, sbom v1.Descriptor) {
	t.Helper()
	subject, err := ocitest.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	sig = ts.attachArtifact(t, repo, subject, testSigType, `{"sig":1}`)
	sbom = ts.attachArtifact(t, repo, subject, testSBOMType, `{"spdx":1}`)
	ts.attachArtifact(t, repo, sbom, testSigType, `{"sig":2}`)
	return sig, sbom
}

// Images counts each tag's referrers by artifact type, from the referrers
// index: an entry removed from the index is no longer counted (it is not
// a scan of the manifests), and a repository whose index is gone gets it
// rebuilt.
func TestImagesCountsReferrers(t *testing.T) {
	ts := startServer(t, nil)
	img := randomImage(t)
	ts.push(t, "signed/app:v1", img)
	ts.push(t, "signed/app:v2", img)
	ts.push(t, "signed/app:plain", randomImage(t))
	_, sbom := ts.signAndSBOM(t, "signed/app", img)
	want := []ReferrerCount{{testSBOMType, 1}, {testSigType, 1}}

	tags := func() []ImageTag {
		t.Helper()
		repos, err := ts.state.Images(context.Background())
		if err != nil || len(repos) != 1 {
			t.Fatalf("Images: %+v %v", repos, err)
		}
		return repos[0].Tags
	}
	v1Referrers := func() []ReferrerCount {
		t.Helper()
		for _, tg := range tags() {
			if tg.Tag == "v1" {
				return tg.Referrers
			}
		}
		t.Fatal("no tag v1")
		return nil
	}
	for _, tg := range tags() {
		switch tg.Tag {
		case "v1", "v2":
			if !slices.Equal(tg.Referrers, want) || tg.ReferrerTotal() != 2 {
				t.Errorf("%s: referrers %+v, want %+v", tg.Tag, tg.Referrers, want)
			}
		default:
			if tg.Referrers != nil {
				t.Errorf("%s: referrers %+v, want none", tg.Tag, tg.Referrers)
			}
		}
	}

	subject, _ := img.Digest()
	entry := osPath(ts.state.StorageDir(), referrerEntryPath("signed/app", digest(subject.String()), digest(sbom.Digest.String())))
	if err := os.Remove(entry); err != nil {
		t.Fatal(err)
	}
	if got := v1Referrers(); !slices.Equal(got, []ReferrerCount{{testSigType, 1}}) {
		t.Errorf("after removing the SBOM's index entry: %+v, want the signature only", got)
	}
	if err := os.RemoveAll(osPath(ts.state.StorageDir(), referrersDir("signed/app"))); err != nil {
		t.Fatal(err)
	}
	if got := v1Referrers(); !slices.Equal(got, want) {
		t.Errorf("after losing the index: %+v, want %+v (rebuilt)", got, want)
	}
}

// checkUIReferrers checks that /images shows ref's referrers: n in all,
// each artifact type named.
func checkUIReferrers(t *testing.T, body, ref string, n int, types ...string) {
	t.Helper()
	i := strings.Index(body, `data-ref="`+ref+`"`)
	if i < 0 {
		t.Fatalf("/images does not list %s", ref)
	}
	row := body[i:]
	row = html.UnescapeString(row[:strings.Index(row, "</tr>")])
	if n == 0 {
		if strings.Contains(row, "referrer") {
			t.Errorf("/images shows referrers for %s:\n%s", ref, row)
		}
		return
	}
	if !strings.Contains(row, `data-referrers="`+strconv.Itoa(n)+`"`) {
		t.Errorf("/images does not show %d referrers for %s:\n%s", n, ref, row)
	}
	for _, ty := range types {
		if !strings.Contains(row, `<span class="ref-type">1 <code>`+ty+"</code></span>") {
			t.Errorf("/images does not show one %s referrer for %s:\n%s", ty, ref, row)
		}
	}
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
