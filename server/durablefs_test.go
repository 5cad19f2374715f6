package server

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// TestDurableFSSyncsTheWayToEveryWrite: a write returns only when the
// directory holding it and every directory it created on the way are
// synced (the filesystem driver syncs the file's own directory on
// PutContent, nothing on Move, nothing above), and a move syncs both ends.
// After a power cut a file that was written is then reachable.
func TestDurableFSSyncsTheWayToEveryWrite(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newDurableFS(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root)
	var synced []string
	d.sync = func(dir string) error {
		synced = append(synced, dir)
		return syncDir(dir)
	}
	// wantChain: every directory from dir up to the first one that
	// existed before the write (which got a new entry) was synced.
	var existed func(string) bool
	before := func() {
		synced = nil
		seen := map[string]bool{}
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				seen[p] = true
			}
			return nil
		})
		existed = func(p string) bool { return seen[osPath(root, p)] }
	}
	wantChain := func(what, dir string) {
		t.Helper()
		for p := dir; ; p = path.Dir(p) {
			if !slices.Contains(synced, osPath(root, p)) {
				t.Errorf("%s: directory %s not synced (synced: %v)", what, p, rel(root, synced))
			}
			if existed(p) || p == "/" {
				break
			}
		}
	}
	h := strings.Repeat("ab", 32)
	before()
	link := path.Join(tagIndexEntryDir("app", "v1", digest("sha256:"+h)), "link")
	if err := d.PutContent(ctx, link, []byte("sha256:"+h)); err != nil {
		t.Fatal(err)
	}
	wantChain("PutContent into new directories", path.Dir(link))

	before()
	upload := path.Join(uploadsDir("app"), "u1", "data")
	w, err := d.Writer(ctx, upload, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("layer")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	wantChain("Writer.Commit into new directories", path.Dir(upload))

	before()
	blob := blobDataPath(digest("sha256:" + h))
	if err := d.Move(ctx, upload, blob); err != nil {
		t.Fatal(err)
	}
	wantChain("Move into new directories", path.Dir(blob))
	if !slices.Contains(synced, osPath(root, path.Dir(upload))) {
		t.Errorf("Move: the source directory was not synced (synced: %v)", rel(root, synced))
	}

	synced = nil
	if err := d.Delete(ctx, path.Join(tagsDir("app"), "v1")); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(synced, osPath(root, tagsDir("app"))) {
		t.Errorf("untag: the tag list directory was not synced (synced: %v)", rel(root, synced))
	}
}

func rel(root string, dirs []string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		r, _ := filepath.Rel(root, d)
		out = append(out, filepath.ToSlash(r))
	}
	return out
}

// putContentCounter counts the calls of the driver's PutContent under
// edgecrfs.
type putContentCounter struct {
	storagedriver.StorageDriver
	n int
}

func (c *putContentCounter) PutContent(ctx context.Context, p string, content []byte) error {
	c.n++
	return c.StorageDriver.PutContent(ctx, p, content)
}

// TestDurableFSPutContentSyncsItsDirectoryOnce: a PutContent into an
// existing directory replaces the file whole, leaves no temporary file and
// syncs that directory once: not through the filesystem driver's
// PutContent, which syncs the directory itself (edgecrfs used to call it
// and then sync the directory again).
func TestDurableFSPutContentSyncsItsDirectoryOnce(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	inner := &putContentCounter{StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})}
	d := newDurableFS(inner, root)
	var synced []string
	d.sync = func(dir string) error {
		synced = append(synced, dir)
		return syncDir(dir)
	}
	p := path.Join(uploadsDir("app"), "u1", "startedat")
	if err := d.PutContent(ctx, p, []byte("first")); err != nil {
		t.Fatal(err)
	}
	synced = nil
	if err := d.PutContent(ctx, p, []byte("second")); err != nil {
		t.Fatal(err)
	}
	if got, err := d.GetContent(ctx, p); err != nil || string(got) != "second" {
		t.Fatalf("after the second PutContent: %q, %v; want %q", got, err, "second")
	}
	dir := osPath(root, path.Dir(p))
	if want := []string{dir}; !slices.Equal(synced, want) {
		t.Errorf("synced %v, want %v", rel(root, synced), rel(root, want))
	}
	if inner.n != 0 {
		t.Errorf("the filesystem driver's PutContent (which syncs the directory itself) was called %d times", inner.n)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in %s", e.Name(), path.Dir(p))
		}
	}
}
