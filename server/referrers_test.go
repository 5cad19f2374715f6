package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const emptyConfigType = "application/vnd.oci.empty.v1+json"

// referrersList is the referrers API's answer.
type referrersList struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

// artifactManifest is an OCI artifact (image manifest with an empty config
// and no layers) with an artifactType, annotations and a subject.
func artifactManifest(t *testing.T, artifactType string, subject *v1.Descriptor, note string) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.OCIManifestSchema1),
		"artifactType":  artifactType,
		"config":        map[string]any{"mediaType": emptyConfigType, "digest": emptyDigest(), "size": 2},
		"layers":        []any{},
		"annotations":   map[string]string{"note": note},
	}
	if subject != nil {
		m["subject"] = map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func emptyDigest() string {
	d, _ := digestOf([]byte("{}"), "sha256")
	return d.String()
}

// putArtifact pushes the empty config and the manifest by digest and
// returns the response (closed) and the digest.
func (ts *testServer) putArtifact(t *testing.T, repo string, body []byte) (*http.Response, digest) {
	t.Helper()
	if err := remote.WriteLayer(ts.ref(repo).Context(), static.NewLayer([]byte("{}"), emptyConfigType), ts.admin()...); err != nil {
		t.Fatal(err)
	}
	d, _ := digestOf(body, "sha256")
	resp := ts.do("PUT", "/v2/"+repo+"/manifests/"+d.String(), "admin", ts.adminPW, body, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, d
}

func (ts *testServer) referrers(t *testing.T, repo, subject, query string) (referrersList, *http.Response) {
	t.Helper()
	resp := ts.do("GET", "/v2/"+repo+"/referrers/"+subject+query, "admin", ts.adminPW, nil, nil)
	defer resp.Body.Close()
	var l referrersList
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatalf("decoding referrers of %s: %v", subject, err)
		}
	}
	return l, resp
}

func digestsOf(l referrersList) []string {
	var out []string
	for _, m := range l.Manifests {
		out = append(out, m.Digest)
	}
	return out
}

func subjectDesc(t *testing.T, ts *testServer, ref string) v1.Descriptor {
	t.Helper()
	desc, err := remote.Head(ts.ref(ref), ts.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	return *desc
}

// The referrers API lists a subject's referrers with artifactType and
// annotations, filters by artifactType, answers an empty index for none,
// and the PUT of a manifest with a subject answers OCI-Subject.
func TestReferrersAPI(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "ref/app:v1", ociImage(t, 8<<10, 1))
	subj := subjectDesc(t, ts, "ref/app:v1")

	sigBody := artifactManifest(t, "application/vnd.example.signature", &subj, "sig")
	resp, sig := ts.putArtifact(t, "ref/app", sigBody)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != subj.Digest.String() {
		t.Fatalf("PUT with subject: %d, OCI-Subject %q; want 201, %s", resp.StatusCode, resp.Header.Get("OCI-Subject"), subj.Digest)
	}
	sbomBody := artifactManifest(t, "application/vnd.example.sbom", &subj, "sbom")
	_, sbom := ts.putArtifact(t, "ref/app", sbomBody)
	// A manifest without a subject gets no OCI-Subject.
	resp, _ = ts.putArtifact(t, "ref/app", artifactManifest(t, "application/vnd.example.other", nil, "plain"))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != "" {
		t.Fatalf("PUT without subject: %d, OCI-Subject %q", resp.StatusCode, resp.Header.Get("OCI-Subject"))
	}

	l, resp := ts.referrers(t, "ref/app", subj.Digest.String(), "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != mediaTypeOCIIndex || l.SchemaVersion != 2 || l.MediaType != mediaTypeOCIIndex {
		t.Fatalf("referrers: %d %q %+v", resp.StatusCode, resp.Header.Get("Content-Type"), l)
	}
	want := map[string]ociDescriptor{
		sig.String():  {MediaType: string(types.OCIManifestSchema1), Digest: sig.String(), Size: int64(len(sigBody)), ArtifactType: "application/vnd.example.signature", Annotations: map[string]string{"note": "sig"}},
		sbom.String(): {MediaType: string(types.OCIManifestSchema1), Digest: sbom.String(), Size: int64(len(sbomBody)), ArtifactType: "application/vnd.example.sbom", Annotations: map[string]string{"note": "sbom"}},
	}
	if len(l.Manifests) != 2 {
		t.Fatalf("referrers: %d descriptors, want 2: %+v", len(l.Manifests), l.Manifests)
	}
	for _, m := range l.Manifests {
		w := want[m.Digest]
		if m.MediaType != w.MediaType || m.Size != w.Size || m.ArtifactType != w.ArtifactType || m.Annotations["note"] != w.Annotations["note"] {
			t.Errorf("descriptor %+v, want %+v", m, w)
		}
	}
	if resp.Header.Get("OCI-Filters-Applied") != "" {
		t.Errorf("OCI-Filters-Applied without a filter: %q", resp.Header.Get("OCI-Filters-Applied"))
	}

	l, resp = ts.referrers(t, "ref/app", subj.Digest.String(), "?artifactType=application/vnd.example.sbom")
	if resp.Header.Get("OCI-Filters-Applied") != "artifactType" || len(l.Manifests) != 1 || l.Manifests[0].Digest != sbom.String() {
		t.Errorf("filtered: OCI-Filters-Applied %q, %v; want artifactType, [%s]", resp.Header.Get("OCI-Filters-Applied"), digestsOf(l), sbom)
	}

	// No referrers: an empty index, also for a repository with nothing in it.
	none, _ := digestOf([]byte("nothing"), "sha256")
	for _, repo := range []string{"ref/app", "ref/never-pushed"} {
		resp := ts.do("GET", "/v2/"+repo+"/referrers/"+none.String(), "admin", ts.adminPW, nil, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"manifests":[]`) {
			t.Errorf("%s: no referrers: %d %s; want 200 and an empty manifests list", repo, resp.StatusCode, b)
		}
	}

	// The pull role may list; no credentials may not.
	pw := ts.addIdentity("reader", RolePull)
	resp = ts.do("GET", "/v2/ref/app/referrers/"+subj.Digest.String(), "reader", pw, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pull role: %d, want 200", resp.StatusCode)
	}
	resp = ts.do("GET", "/v2/ref/app/referrers/"+subj.Digest.String(), "", "", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", resp.StatusCode)
	}
}

// Bad input to the referrers API gets the OCI error code.
func TestReferrersAPIBadInput(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "ref/bad:v1", ociImage(t, 4<<10, 1))
	good := subjectDesc(t, ts, "ref/bad:v1").Digest.String()
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/ref/bad/referrers/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/ref/bad/referrers/notadigest", 400, "DIGEST_INVALID"},
		{"GET", "/v2/ref/bad/referrers/sha384:" + strings.Repeat("a", 96), 400, "DIGEST_INVALID"},
		{"GET", "/v2/ref/bad/referrers/" + strings.ToUpper(good), 400, "DIGEST_INVALID"},
		{"GET", "/v2/Ref/Bad/referrers/" + good, 400, "NAME_INVALID"},
		{"GET", "/v2/ref/bad/referrers/" + good + "?last=nope", 400, "PAGINATION_NUMBER_INVALID"},
		{"POST", "/v2/ref/bad/referrers/" + good, 405, "UNSUPPORTED"},
	} {
		resp := ts.do(tc.method, tc.path, "admin", ts.adminPW, nil, nil)
		status := resp.StatusCode
		if code := errorCode(t, resp); status != tc.status || code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, status, code, tc.status, tc.code)
		}
	}
}

// A subject that is not a descriptor, or an artifactType that is not a
// media type: MANIFEST_INVALID, and nothing is stored.
func TestReferrersPutBadManifest(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "ref/badput:v1", ociImage(t, 4<<10, 1))
	subj := subjectDesc(t, ts, "ref/badput:v1")
	valid := artifactManifest(t, "application/vnd.example.sig", &subj, "x")
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(valid, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for name, body := range map[string][]byte{
		"subject is a string":        mutate(func(m map[string]any) { m["subject"] = subj.Digest.String() }),
		"subject without size":       mutate(func(m map[string]any) { delete(m["subject"].(map[string]any), "size") }),
		"subject digest malformed":   mutate(func(m map[string]any) { m["subject"].(map[string]any)["digest"] = "sha256:1234" }),
		"subject digest sha384":      mutate(func(m map[string]any) { m["subject"].(map[string]any)["digest"] = "sha384:" + strings.Repeat("a", 96) }),
		"artifactType not a type":    mutate(func(m map[string]any) { m["artifactType"] = "not a media type" }),
		"subject mediaType not type": mutate(func(m map[string]any) { m["subject"].(map[string]any)["mediaType"] = "x" }),
	} {
		t.Run(name, func(t *testing.T) {
			resp, d := ts.putArtifact(t, "ref/badput", body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("PUT: %d, want 400", resp.StatusCode)
			}
			get := ts.do("GET", "/v2/ref/badput/manifests/"+d.String(), "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
			get.Body.Close()
			if get.StatusCode != http.StatusNotFound {
				t.Errorf("the refused manifest: GET %d, want 404", get.StatusCode)
			}
			resp = ts.do("PUT", "/v2/ref/badput/manifests/"+d.String(), "admin", ts.adminPW, body, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
			if code := errorCode(t, resp); code != "MANIFEST_INVALID" {
				t.Errorf("code %s, want MANIFEST_INVALID", code)
			}
		})
	}
	if _, err := os.Stat(osPath(ts.state.StorageDir(), referrersSubjectDir("ref/badput", digest(subj.Digest.String())))); !os.IsNotExist(err) {
		t.Errorf("an index entry was written for a refused manifest: %v", err)
	}
}

// A subject that does not exist (yet) is accepted and indexed.
func TestReferrersSubjectMissing(t *testing.T) {
	ts := startServer(t, nil)
	ghost, _ := digestOf([]byte("not pushed"), "sha256")
	subj := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: ghost.Encoded()}, Size: 10}
	resp, d := ts.putArtifact(t, "ref/ghost", artifactManifest(t, "application/vnd.example.sig", &subj, "g"))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != ghost.String() {
		t.Fatalf("PUT: %d, OCI-Subject %q", resp.StatusCode, resp.Header.Get("OCI-Subject"))
	}
	if l, _ := ts.referrers(t, "ref/ghost", ghost.String(), ""); len(l.Manifests) != 1 || l.Manifests[0].Digest != d.String() {
		t.Errorf("referrers of a missing subject: %v, want [%s]", digestsOf(l), d)
	}
}

// The index follows deletes, ignores tag moves, skips a manifest whose
// PUT failed after its entry was written (the crash order), is what a
// listing reads (not a scan), and is rebuilt by a scan when lost.
func TestReferrersIndexLifecycle(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "ref/life:v1", ociImage(t, 4<<10, 1))
	subj := subjectDesc(t, ts, "ref/life:v1")
	sd := subj.Digest.String()
	_, sig := ts.putArtifact(t, "ref/life", artifactManifest(t, "application/vnd.example.sig", &subj, "1"))
	list := func() []string {
		t.Helper()
		l, resp := ts.referrers(t, "ref/life", sd, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("referrers: %d", resp.StatusCode)
		}
		return digestsOf(l)
	}
	if got := list(); len(got) != 1 || got[0] != sig.String() {
		t.Fatalf("referrers %v, want [%s]", got, sig)
	}

	// A tag move of the subject changes nothing.
	ts.push(t, "ref/life:v1", ociImage(t, 4<<10, 1))
	if got := list(); len(got) != 1 {
		t.Errorf("after a tag move: %v", got)
	}

	// Deleted: not listed; pushed again: listed.
	ts.deleteManifest(t, "ref/life", sig.String())
	if got := list(); len(got) != 0 {
		t.Errorf("after delete: %v, want none", got)
	}
	ts.putArtifact(t, "ref/life", artifactManifest(t, "application/vnd.example.sig", &subj, "1"))
	if got := list(); len(got) != 1 {
		t.Errorf("after re-push: %v", got)
	}

	// A PUT that distribution refuses after the entry was written (a layer
	// it does not have), as a crash after the entry would leave it: the
	// entry exists, the manifest does not, and it is not listed.
	broken := map[string]any{}
	json.Unmarshal(artifactManifest(t, "application/vnd.example.sig", &subj, "2"), &broken)
	missing, _ := digestOf([]byte("missing layer"), "sha256")
	broken["layers"] = []any{map[string]any{"mediaType": "application/octet-stream", "digest": missing.String(), "size": 13}}
	bb, _ := json.Marshal(broken)
	resp, bd := ts.putArtifact(t, "ref/life", bb)
	if resp.StatusCode/100 == 2 {
		t.Fatalf("PUT with a missing layer: %d", resp.StatusCode)
	}
	if _, err := os.Stat(osPath(ts.state.StorageDir(), referrerEntryPath("ref/life", digest(sd), bd))); err != nil {
		t.Fatalf("the entry of the refused PUT: %v (the entry is written before the manifest)", err)
	}
	if got := list(); len(got) != 1 || got[0] != sig.String() {
		t.Errorf("with an entry whose manifest does not exist: %v, want [%s]", got, sig)
	}

	// A manifest with a subject put into the layout behind the server's
	// back is not listed while the index exists (listings read the index),
	// and is once the index is lost and rebuilt.
	side := artifactManifest(t, "application/vnd.example.side", &subj, "side")
	sided, _ := digestOf(side, "sha256")
	drv := openDurableFS(ts.state.StorageDir())
	ctx := context.Background()
	if err := drv.PutContent(ctx, blobDataPath(sided), side); err != nil {
		t.Fatal(err)
	}
	if err := drv.PutContent(ctx, path.Join(revisionLinkDir("ref/life", sided), "link"), []byte(sided)); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 1 {
		t.Errorf("listing scanned the repository: %v", got)
	}
	if err := os.RemoveAll(osPath(ts.state.StorageDir(), referrersDir("ref/life"))); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 2 {
		t.Errorf("after the index was lost: %v, want 2 (rebuilt by a scan)", got)
	}
	if _, err := os.Stat(osPath(ts.state.StorageDir(), referrersMarker("ref/life"))); err != nil {
		t.Errorf("rebuild wrote no marker: %v", err)
	}
}

// A long list is paged with Link headers.
func TestReferrersPagination(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	idx := &referrersIndex{d: openDurableFS(root)}
	subject, _ := digestOf([]byte("subject"), "sha256")
	want := map[string]bool{}
	for i := range 5 {
		d, _ := digestOf([]byte(fmt.Sprint(i)), "sha256")
		at := "application/vnd.a"
		if i%2 == 1 {
			at = "application/vnd.b"
		}
		if err := idx.add(ctx, "p/r", subject, ociDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: d.String(), Size: 1, ArtifactType: at}); err != nil {
			t.Fatal(err)
		}
		if err := idx.d.PutContent(ctx, path.Join(revisionLinkDir("p/r", d), "link"), []byte(d)); err != nil {
			t.Fatal(err)
		}
		if at == "application/vnd.a" {
			want[d.String()] = true
		}
	}
	h := &referrersHandler{idx: idx, pageSize: 2}
	got := map[string]bool{}
	next := "/v2/p/r/referrers/" + subject.String() + "?artifactType=application/vnd.a"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", next, nil))
		var l referrersList
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || rec.Code != 200 {
			t.Fatalf("page %d: %d %s", pages, rec.Code, rec.Body)
		}
		if len(l.Manifests) > 2 {
			t.Errorf("page of %d, want at most 2", len(l.Manifests))
		}
		for _, m := range l.Manifests {
			if got[m.Digest] || m.ArtifactType != "application/vnd.a" {
				t.Errorf("page %d: %+v repeated or not filtered", pages, m)
			}
			got[m.Digest] = true
		}
		next = ""
		if link := rec.Header().Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.Split(link, ">")[0], "<")
		}
	}
	if len(got) != len(want) {
		t.Errorf("paged %d referrers, want %d", len(got), len(want))
	}
}

// Concurrent pushes of referrers of one subject: each has its own entry
// (no read-modify-write of a shared list), so none is lost.
func TestReferrersConcurrentPushes(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "ref/conc:v1", ociImage(t, 4<<10, 1))
	subj := subjectDesc(t, ts, "ref/conc:v1")
	if err := remoteWriteEmptyConfig(ts, "ref/conc"); err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			body := artifactManifest(t, "application/vnd.example.sig", &subj, fmt.Sprint(i))
			d, _ := digestOf(body, "sha256")
			resp := ts.do("PUT", "/v2/ref/conc/manifests/"+d.String(), "admin", ts.adminPW, body, map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("PUT %d: %d", i, resp.StatusCode)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if l, _ := ts.referrers(t, "ref/conc", subj.Digest.String(), ""); len(l.Manifests) != n {
		t.Errorf("%d referrers listed after %d concurrent pushes", len(l.Manifests), n)
	}
}
