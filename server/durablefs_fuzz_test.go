package server

import (
	"path"
	"strings"
	"testing"
)

// FuzzDurableFSPaths: edgecrfs recognises a tag directory, a tag list and
// a revision link from their driver paths exactly, for every repository
// name and tag a client can use, and mistakes no other path of theirs (a
// tag's index entry, its current link, a layer link, the GC trash) for one.
func FuzzDurableFSPaths(f *testing.F) {
	f.Add("app", "v1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	f.Add("a/b-c/d_e", "latest", "ff"+strings.Repeat("0", 62))
	f.Add("x/_manifests/tags", "y", "00")
	f.Fuzz(func(t *testing.T, repo, tag, hex string) {
		if validRepoName(repo) != nil || !tagRE.MatchString(tag) {
			return
		}
		dir := path.Join(tagsDir(repo), tag)
		if m := tagDirRE.FindStringSubmatch(dir); m == nil || m[1] != repo || m[2] != tag {
			t.Fatalf("tag dir %s: got %q", dir, m)
		}
		if m := tagsListRE.FindStringSubmatch(tagsDir(repo)); m == nil || m[1] != repo {
			t.Fatalf("tag list %s: got %q", tagsDir(repo), m)
		}
		d, err := parseDigest("sha256:" + hex)
		if err != nil {
			return
		}
		rev := path.Join(revisionLinkDir(repo, d), "link")
		if m := revisionLinkRE.FindStringSubmatch(rev); m == nil || m[1] != repo || m[3] != d.Encoded() {
			t.Fatalf("revision link %s: got %q", rev, m)
		}
		for _, p := range []string{
			path.Join(tagIndexEntryDir(repo, tag, d), "link"), tagCurrentLink(repo, tag),
			path.Join(layerLinkDir(repo, d), "link"), path.Join(trashRoot, "id", strings.TrimPrefix(dir, v2Root+"/")),
			path.Join(trashRoot, "id", strings.TrimPrefix(rev, v2Root+"/")),
		} {
			if tagDirRE.MatchString(p) || tagsListRE.MatchString(p) || revisionLinkRE.MatchString(p) {
				t.Fatalf("%s taken for a tag dir, tag list or revision link", p)
			}
		}
	})
}
