package server

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Paths of distribution's storage layout (registry/storage/paths.go, layout
// version "v2"), as driver paths. Distribution keeps its path mapper
// unexported; the layout is stable because every registry on disk depends
// on it.
const v2Root = "/docker/registry/v2"

// trashRoot holds what a garbage collection has taken out of the layout
// and not yet deleted (see gc.go). It is outside blobs/ and repositories/,
// which are all that distribution reads.
const trashRoot = v2Root + "/_edgecr_gc_trash"

func blobDir(d digest) string {
	h := d.Encoded()
	return path.Join(v2Root, "blobs", d.Algorithm(), h[:2], h)
}

func blobDataPath(d digest) string { return path.Join(blobDir(d), "data") }

func repoDir(repo string) string { return path.Join(v2Root, "repositories", repo) }

func layerLinkDir(repo string, d digest) string {
	return path.Join(repoDir(repo), "_layers", d.Algorithm(), d.Encoded())
}

func revisionLinkDir(repo string, d digest) string {
	return path.Join(repoDir(repo), "_manifests", "revisions", d.Algorithm(), d.Encoded())
}

func tagsDir(repo string) string { return path.Join(repoDir(repo), "_manifests", "tags") }

func tagCurrentLink(repo, tag string) string { return path.Join(tagsDir(repo), tag, "current", "link") }

func tagIndexEntryDir(repo, tag string, d digest) string {
	return path.Join(tagsDir(repo), tag, "index", d.Algorithm(), d.Encoded())
}

func uploadsDir(repo string) string { return path.Join(repoDir(repo), "_uploads") }

// uploadIDRE is what distribution's upload ids look like (UUIDs); anything
// else taken from a URL is not turned into a path.
var uploadIDRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// digest is a content digest, "<algorithm>:<hex>", checked by parseDigest.
type digest string

// Algorithm is the part before the colon ("sha256").
func (d digest) Algorithm() string { a, _, _ := strings.Cut(string(d), ":"); return a }

// Encoded is the hex part.
func (d digest) Encoded() string { _, h, _ := strings.Cut(string(d), ":"); return h }

func (d digest) String() string { return string(d) }

var digestRE = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)

// parseDigest accepts only the digests distribution stores (sha256, sha512,
// lower-case hex), so that a digest taken from a URL or a manifest is safe
// to put in a path.
func parseDigest(s string) (digest, error) {
	if !digestRE.MatchString(s) {
		return "", fmt.Errorf("invalid digest %q", s)
	}
	return digest(s), nil
}

// osPath turns a driver path into a path of the filesystem driver rooted
// at root.
func osPath(root, driverPath string) string {
	return filepath.Join(root, filepath.FromSlash(driverPath))
}
