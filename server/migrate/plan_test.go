package migrate

import (
	"context"
	"path"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func TestPlan(t *testing.T) {
	src, err := filesystem.FromParameters(map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := src.PutContent(ctx, v2Root+"/repositories/a/_layers/sha256/ab/link", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, out string }{
		{v2Root + "/blobs/sha256/ab/abcd/data", v2Root + "/blobs/sha256/ab/abcd/data"},
		{v2Root + "/repositories/a/_uploads/u1/data", ""},
		{v2Root + "/repositories/a/_edgecr_referrers/x.json", v2Root + "/repositories/a/_edgecr_referrers/x.json"},
		{trashRoot + "/run1/repositories/a/_layers/sha256/cd/link", v2Root + "/repositories/a/_layers/sha256/cd/link"},
		{trashRoot + "/run1/repositories/a/_layers/sha256/ab/link", ""}, // the original is back
		{trashRoot + "/run1", ""},
		{trashRoot + "/run1/../../x", ""},
		{"/other/file", "/other/file"},
	} {
		got, ok, err := plan(ctx, src, c.in)
		if err != nil || (ok && got != c.out) || (!ok && c.out != "") {
			t.Errorf("plan(%s) = %q, %v, %v; want %q", c.in, got, ok, err, c.out)
		}
	}
}

// FuzzPlan: whatever path the walk gives, a destination stays a clean path
// of the same tree, and a trash item lands under v2Root outside the trash.
func FuzzPlan(f *testing.F) {
	for _, s := range []string{v2Root + "/blobs/sha256/ab/abcd/data", trashRoot + "/r/blobs/sha256/ab/x/data", trashRoot + "/r/../../../x", "/a"} {
		f.Add(s)
	}
	src, err := filesystem.FromParameters(map[string]any{"rootdirectory": f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		got, ok, err := plan(context.Background(), src, p)
		if err != nil || !ok {
			return
		}
		if strings.HasPrefix(p, trashRoot+"/") {
			if !strings.HasPrefix(got, v2Root+"/") || strings.HasPrefix(got, trashRoot) || path.Clean(got) != got {
				t.Fatalf("plan(%q) = %q: outside the layout", p, got)
			}
		} else if got != p {
			t.Fatalf("plan(%q) = %q: want the same path", p, got)
		}
		if d, _, isBlob := blobDigest(got); isBlob && !strings.Contains(got, d) {
			t.Fatalf("blobDigest(%q) = %q", got, d)
		}
	})
}
