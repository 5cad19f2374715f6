package server

import (
	"path"
	"strings"
)

// pruneReferrers removes the referrers index entries of repo whose
// manifest is gone (deleted through the API or by this collection) and
// that are older than the grace period; a listing skips them anyway, this
// keeps the index from growing with them. Each entry is moved aside and
// checked again, as everything the collector removes: an entry a push
// rewrote meanwhile (young) or whose manifest came back goes back.
func (c *collector) pruneReferrers(repo string) error {
	if c.o.DryRun {
		return nil
	}
	algs, err := c.list(referrersDir(repo))
	if err != nil {
		return err
	}
	for _, alg := range algs {
		if alg != "sha256" && alg != "sha512" {
			// The marker, or a file being written beside it (its
			// temporary name) by a listing that rebuilds the index now.
			continue
		}
		subjects, err := c.list(path.Join(referrersDir(repo), alg))
		if err != nil {
			return err
		}
		for _, hex := range subjects {
			dir := path.Join(referrersDir(repo), alg, hex)
			entries, err := c.list(dir)
			if err != nil {
				return err
			}
			for _, name := range entries {
				a, h, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
				d, err := parseDigest(a + ":" + h)
				if !ok || err != nil {
					continue
				}
				if err := c.pruneReferrer(repo, path.Join(dir, name), d); err != nil {
					c.fail("repository %s: referrers index entry %s: %v", repo, name, err)
				}
			}
		}
	}
	return nil
}

// pruneReferrer removes the entry at p for the referrer d when d's
// revision is gone and the entry is old.
func (c *collector) pruneReferrer(repo, p string, d digest) error {
	link := path.Join(revisionLinkDir(repo, d), "link")
	gone := func() (bool, error) {
		fi, err := c.stat(link)
		return fi == nil && err == nil, err
	}
	if ok, err := gone(); err != nil || !ok {
		return err
	}
	if young, err := c.usedSince(p); err != nil || young {
		return err
	}
	moved, err := c.takeOut(p)
	if err != nil || !moved {
		return err
	}
	ok, err := gone()
	if err == nil && ok {
		var young bool
		young, err = c.usedSince(c.trashPath(p))
		ok = !young
	}
	if err != nil || !ok {
		if perr := c.putBack(p); perr != nil {
			return perr
		}
		return err
	}
	return c.dispose(p)
}

// isReferrerEntry reports whether the driver path p is a referrers index
// entry (also inside the collector's trash).
func isReferrerEntry(p string) bool {
	return strings.HasSuffix(p, ".json") && strings.Contains(p, "/"+referrersDirName+"/")
}
