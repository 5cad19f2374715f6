package server

import (
	"fmt"
	"os"
	"path"
	"strings"
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
	b, err := os.ReadFile(osPath(f.root, path.Join(layerLinkDir(repo, d), "link")))
	if err != nil {
		return ""
	}
	cd, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil || cd == d {
		return ""
	}
	return cd
}
