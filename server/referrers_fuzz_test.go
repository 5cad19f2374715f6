package server

import (
	"context"
	"encoding/json"
	"path"
	"strings"
	"testing"
)

// FuzzReferrerOf: any manifest body either is refused, has no subject, or
// yields a valid subject and a descriptor of the body's own digest.
func FuzzReferrerOf(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"subject":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"artifactType":"x/y","annotations":{"k":"v"}}`), "sha256")
	f.Add([]byte(`{"subject":"sha256:00"}`), "sha512")
	f.Add([]byte(`{"subject":null,"artifactType":"bad type"}`), "sha256")
	f.Add([]byte(`[]`), "md5")
	f.Fuzz(func(t *testing.T, body []byte, alg string) {
		subject, desc, err := referrerOf(body, "application/vnd.oci.image.manifest.v1+json", alg)
		if err != nil || subject == "" {
			return
		}
		if _, perr := parseDigest(subject.String()); perr != nil {
			t.Fatalf("subject %q is not a valid digest", subject)
		}
		want, derr := digestOf(body, alg)
		if derr != nil || desc.Digest != want.String() || desc.Size != int64(len(body)) {
			t.Fatalf("descriptor %+v for a body of %d bytes (%v)", desc, len(body), derr)
		}
		if desc.ArtifactType != "" && !mediaTypeRE.MatchString(desc.ArtifactType) && !strings.Contains(string(body), `"config"`) {
			t.Fatalf("artifactType %q is not a media type", desc.ArtifactType)
		}
	})
}

// FuzzReferrersIndexEntry: an index entry on disk with any content (a
// file someone edited, or damaged) is skipped or listed as what its name
// says, never an error for the whole listing.
func FuzzReferrersIndexEntry(f *testing.F) {
	ctx := context.Background()
	x := &referrersIndex{d: openDurableFS(f.TempDir())}
	const repo = "fuzz/repo"
	subject := digest("sha256:" + strings.Repeat("5", 64))
	ref := digest("sha256:" + strings.Repeat("a", 64))
	for p, b := range map[string][]byte{
		referrersMarker(repo):                         {},
		path.Join(revisionLinkDir(repo, ref), "link"): []byte(ref),
	} {
		if err := x.d.PutContent(ctx, p, b); err != nil {
			f.Fatal(err)
		}
	}
	good, _ := json.Marshal(ociDescriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: ref.String(), Size: 2, ArtifactType: "x/y"})
	f.Add(good)
	f.Add([]byte(`{"digest":"sha256:` + strings.Repeat("b", 64) + `"}`))
	f.Add([]byte(`{"digest":"sha256:AA"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, entry []byte) {
		if err := x.d.PutContent(ctx, referrerEntryPath(repo, subject, ref), entry); err != nil {
			t.Fatal(err)
		}
		got, err := x.list(ctx, repo, subject)
		if err != nil {
			t.Fatalf("listing with entry %q: %v", entry, err)
		}
		if len(got) > 1 || (len(got) == 1 && got[0].Digest != ref.String()) {
			t.Fatalf("entry %q listed as %+v, want nothing or %s", entry, got, ref)
		}
		if string(entry) == string(good) && len(got) != 1 {
			t.Fatalf("a valid entry was not listed: %+v", got)
		}
	})
}
