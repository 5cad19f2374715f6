package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/internal/ocitest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Quota counts referrers: pushing a signature grows the usage by what it
// stores (its blobs, its manifest, its links and its referrers-index
// entry; counter and storage walk agree); a referrer whose layer does not
// fit is refused with the quota's 403 DENIED and leaves nothing; so is a
// referrer manifest that does not fit. The subject's referrers list only
// what was stored.
func TestQuotaCountsReferrers(t *testing.T) {
	const quota = 1 << 20
	ts := startQuotaServer(t, quota)
	img := dockerImage(t, 100<<10, 1)
	subjectDigest := ts.push(t, "signed/app:1", img)
	subject, err := ocitest.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	before := ts.checkUsage(t, "after the image")

	// A signature with a 64 KiB payload.
	payload := bytes.Repeat([]byte("s"), 64<<10)
	sig, err := ocitest.Artifact(subject, testSigType, types.MediaType(testSigType), payload)
	if err != nil {
		t.Fatal(err)
	}
	sigDigest, _ := sig.Digest()
	if err := remote.Write(ts.ref("signed/app@"+sigDigest.String()), sig, ts.admin()...); err != nil {
		t.Fatalf("pushing the signature: %v", err)
	}
	after := ts.checkUsage(t, "after the signature")
	raw, _ := sig.RawManifest()
	cfg, _ := sig.RawConfigFile()
	stored := int64(len(payload) + len(raw) + len(cfg))
	if grew := after - before; grew < stored || grew > stored+8<<10 {
		t.Errorf("the signature grew the usage by %d bytes, want its %d bytes of content plus links and index entry (under 8 KiB)", grew, stored)
	}
	listed := func() []string {
		t.Helper()
		idx, err := remote.Referrers(ts.ref("signed/app").Context().Digest(subjectDigest.String()), ts.admin()...)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := idx.IndexManifest()
		var out []string
		for _, d := range m.Manifests {
			out = append(out, d.Digest.String())
		}
		return out
	}
	if got := listed(); !slices.Equal(got, []string{sigDigest.String()}) {
		t.Fatalf("referrers %v, want the signature", got)
	}

	// An SBOM whose layer is larger than what is left: refused as any
	// upload over the quota, nothing left behind, not listed.
	left := quota - after
	sbom, err := ocitest.Artifact(subject, testSBOMType, types.MediaType(testSBOMType), bytes.Repeat([]byte("b"), int(left+(16<<10))))
	if err != nil {
		t.Fatal(err)
	}
	sbomCfg, _ := sbom.RawConfigFile()
	if err := remote.WriteLayer(ts.ref("signed/app").Context(), static.NewLayer(sbomCfg, types.OCIConfigJSON), ts.admin()...); err != nil {
		t.Fatal(err)
	}
	before = ts.checkUsage(t, "before the SBOM")
	sbomDigest, _ := sbom.Digest()
	err = remote.Write(ts.ref("signed/app@"+sbomDigest.String()), sbom, ts.admin()...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "storage quota full") {
		t.Fatalf("pushing an SBOM over the quota: %v, want 403 DENIED saying the quota is full", err)
	}
	if dirs := ts.uploadDirs(t); len(dirs) != 0 {
		t.Errorf("upload sessions left behind: %v", dirs)
	}
	if got := ts.checkUsage(t, "after the refused SBOM"); got != before {
		t.Errorf("usage went from %d to %d with a refused referrer", before, got)
	}
	if got := listed(); !slices.Equal(got, []string{sigDigest.String()}) {
		t.Errorf("referrers after the refused SBOM: %v, want the signature only", got)
	}

	// A referrer manifest larger than what is left (its blobs are there):
	// refused, not listed.
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m.Annotations = map[string]string{"pad": strings.Repeat("p", int(quota-before)+(4<<10))}
	big, _ := json.Marshal(m)
	bigDigest, _, _ := v1.SHA256(bytes.NewReader(big))
	resp := ts.do("PUT", "/v2/signed/app/manifests/"+bigDigest.String(), "admin", ts.adminPW, big, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	if code := errorCode(t, resp); resp.StatusCode != http.StatusForbidden || code != "DENIED" {
		t.Fatalf("a referrer manifest over the quota: %d %s, want 403 DENIED", resp.StatusCode, code)
	}
	ts.checkUsage(t, "after the refused manifest")
	if got := listed(); !slices.Equal(got, []string{sigDigest.String()}) {
		t.Errorf("referrers after the refused manifest: %v, want the signature only", got)
	}
}
