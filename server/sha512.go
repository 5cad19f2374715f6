package server

import (
	"context"
	"fmt"
	"net/http"

	"path"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// sha512 content in distribution v3: a blob pushed by a sha512 digest is
// verified against it, then stored under its sha256 (the canonical
// digest); the repository's layer link for the sha512 digest names that
// sha256 blob. Whoever follows a sha512 reference to the files (the
// collector's mark, the freshness of a blob a client is told exists) must
// follow that link too.

// canonicalBlob reads repo's link for the blob d: the digest its data is
// stored under. It is d itself for sha256; "" when repo has no link for d.
func (c *collector) canonicalBlob(repo string, d digest) (digest, error) {
	if d.Algorithm() == "sha256" {
		return d, nil
	}
	b, err := c.d.GetContent(c.ctx, path.Join(layerLinkDir(repo, d), "link"))
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("repository %s: reading the link of blob %s: %w", repo, d, err)
	}
	cd, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("repository %s: the link of blob %s: %w", repo, d, err)
	}
	return cd, nil
}

// canonicalBlob is the freshness side of collector.canonicalBlob: ""
// when the link is missing or unreadable (nothing to refresh).
func (f *freshness) canonicalBlob(repo string, d digest) digest {
	if d.Algorithm() == "sha256" || repo == "" {
		return ""
	}
	return f.aliasOf(layerLinkDir(repo, d), d)
}

// sha512Target is the sha512 digest a blob request addresses, if any: a
// blob GET/HEAD/DELETE by digest, the PUT that completes an upload
// (?digest=), a mount (?mount=).
func sha512Target(route, method string, vars map[string]string, query func(string) string) digest {
	var s string
	switch {
	case route == v2.RouteNameBlob:
		s = vars["digest"]
	case route == v2.RouteNameBlobUploadChunk && method == http.MethodPut:
		s = query("digest")
	case route == v2.RouteNameBlobUpload && method == http.MethodPost:
		s = query("mount")
	}
	if d, err := parseDigest(s); err == nil && d.Algorithm() == "sha512" {
		return d
	}
	return ""
}

// sha512Writer answers a request for a sha512 blob with that digest where
// distribution names the sha256 it stored the blob under
// (Docker-Content-Digest, ETag, Location). Distribution verified the
// content against the sha512 when it was uploaded. onCreated, when set,
// runs before a 201 goes out.
type sha512Writer struct {
	http.ResponseWriter
	want      digest
	onCreated func() error
	wrote     bool
}

func (s *sha512Writer) WriteHeader(code int) {
	if s.wrote {
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.wrote = true
	h := s.Header()
	if code == http.StatusCreated && s.onCreated != nil {
		if err := s.onCreated(); err != nil {
			for _, k := range []string{"Location", "Docker-Content-Digest", "Content-Length"} {
				h.Del(k)
			}
			writeError(s.ResponseWriter, errcode.ErrorCodeUnknown.WithMessage(err.Error()))
			return
		}
	}
	stored, err := parseDigest(h.Get("Docker-Content-Digest"))
	if err == nil && stored != s.want && stored.Algorithm() == "sha256" {
		h.Set("Docker-Content-Digest", s.want.String())
		if h.Get("Etag") != "" {
			h.Set("Etag", `"`+s.want.String()+`"`)
		}
		if loc := h.Get("Location"); loc != "" {
			h.Set("Location", strings.Replace(loc, stored.String(), s.want.String(), 1))
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *sha512Writer) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

func (s *sha512Writer) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// linkSha512 makes the links a mount by sha512 gets wrong: distribution
// links the sha512 to itself in the target repository (a GET there fails
// with 500 "unknown blob") and not the stored sha256 at all. The stored
// digest comes from the source repository's link; the sha256 link is
// written before the sha512 one.
func (g *storageGuard) linkSha512(ctx context.Context, repo, from string, d digest) error {
	if g.fresh.canonicalBlob(repo, d) != "" {
		return nil // linked right already (an earlier push or mount)
	}
	if err := validRepoName(from); err != nil {
		return fmt.Errorf("linking mounted blob %s: %w", d, err)
	}
	stored := g.fresh.canonicalBlob(from, d)
	if stored == "" {
		return fmt.Errorf("linking mounted blob %s: repository %s has no link for it", d, from)
	}
	for _, l := range []digest{stored, d} {
		if err := g.referrers.d.PutContent(ctx, path.Join(layerLinkDir(repo, l), "link"), []byte(stored)); err != nil {
			return fmt.Errorf("linking mounted blob %s to %s: %w", d, stored, err)
		}
	}
	return nil
}

// sha512 manifests: distribution v3 digests a manifest with sha256 only
// and refuses a PUT by a sha512 digest ("provided digest did not match").
// The guard checks the sha512 itself, hands distribution the PUT by the
// sha256, and before the 201 goes out links the sha512 revision to the
// sha256 one (repositories/<repo>/_manifests/revisions/sha512/<hex>/link
// holding the sha256), which distribution then follows for GET, HEAD and
// DELETE by the sha512, as it does for blobs.

// sha512Manifest prepares a manifest PUT by a sha512 digest; other PUTs
// pass unchanged. It returns the writer to answer with, or false when it
// answered.
func (g *storageGuard) sha512Manifest(w http.ResponseWriter, r *http.Request, repo, reference string, body []byte) (http.ResponseWriter, bool) {
	want, err := parseDigest(reference)
	if err != nil || want.Algorithm() != "sha512" || g.referrers == nil {
		return w, true
	}
	got, _ := digestOf(body, "sha512")
	if got != want {
		writeError(w, errcode.ErrorCodeDigestInvalid.WithMessage(fmt.Sprintf("manifest digest mismatch: got %s, want %s", got, want)))
		return w, false
	}
	stored, _ := digestOf(body, "sha256")
	r.URL.Path = strings.TrimSuffix(r.URL.Path, reference) + stored.String()
	r.URL.RawPath = ""
	return &sha512Writer{ResponseWriter: w, want: want, onCreated: func() error {
		if err := g.referrers.d.PutContent(r.Context(), path.Join(revisionLinkDir(repo, want), "link"), []byte(stored)); err != nil {
			return fmt.Errorf("linking manifest %s to %s: %w", want, stored, err)
		}
		return nil
	}}, true
}

// canonicalManifest is what repo's revision link for the sha512 manifest
// d names (its sha256), "" for other digests or no link.
func (f *freshness) canonicalManifest(repo string, d digest) digest {
	if d.Algorithm() == "sha256" {
		return ""
	}
	return f.aliasOf(revisionLinkDir(repo, d), d)
}

// aliasOf is the digest the link in dir names for d, "" when the link is
// missing, unreadable or names d itself.
func (f *freshness) aliasOf(dir string, d digest) digest {
	b, err := f.storage().readFile(context.Background(), path.Join(dir, "link"), 1<<10)
	if err != nil {
		return ""
	}
	cd, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil || cd == d {
		return ""
	}
	return cd
}

// canonicalManifest is the collector's: "" when there is no link.
func (c *collector) canonicalManifest(repo string, d digest) (digest, error) {
	if d.Algorithm() == "sha256" {
		return "", nil
	}
	b, err := c.d.GetContent(c.ctx, path.Join(revisionLinkDir(repo, d), "link"))
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("repository %s: reading the link of manifest %s: %w", repo, d, err)
	}
	cd, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("repository %s: the link of manifest %s: %w", repo, d, err)
	}
	if cd == d {
		return "", nil
	}
	return cd, nil
}

// deleteSha512Manifest deletes a manifest addressed by sha512: the sha256
// revision it is stored under (distribution untags what pointed at it),
// then the sha512 link. It reports false for other requests, which pass.
func (g *storageGuard) deleteSha512Manifest(w http.ResponseWriter, r *http.Request, repo, reference string) bool {
	d, err := parseDigest(reference)
	if err != nil || d.Algorithm() != "sha512" || g.referrers == nil {
		return false
	}
	stored := g.fresh.canonicalManifest(repo, d)
	if stored == "" {
		return false // no link: distribution answers 404
	}
	r.URL.Path = strings.TrimSuffix(r.URL.Path, reference) + stored.String()
	r.URL.RawPath = ""
	sw := &statusWriter{ResponseWriter: &sha512Writer{ResponseWriter: w, want: d}}
	g.next.ServeHTTP(sw, r)
	if sw.status/100 == 2 || sw.status == http.StatusNotFound {
		if err := g.referrers.d.Delete(r.Context(), revisionLinkDir(repo, d)); err != nil && !isNotFound(err) {
			g.log.Error("deleting the sha512 link of a deleted manifest", "repo", repo, "digest", d, "err", err)
		}
	}
	return true
}

// storedAs is the digest the content of dg is stored under: dg itself for
// sha256, else the digest the repository's link file at linkFile (a
// driver path) names; dg when the link cannot be read (the caller finds
// the content missing).
func storedAs(ctx context.Context, d storagedriver.StorageDriver, linkFile string, dg digest) digest {
	if dg.Algorithm() == "sha256" {
		return dg
	}
	b, err := d.GetContent(ctx, linkFile)
	if err != nil {
		return dg
	}
	cd, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return dg
	}
	return cd
}
