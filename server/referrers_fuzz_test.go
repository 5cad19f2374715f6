package server

import (
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
