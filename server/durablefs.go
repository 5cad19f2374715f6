package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// durableFSName is the storage driver edgecrd gives distribution: the
// filesystem driver with the write order and fsyncs that make a tag
// survive a SIGKILL or a power cut whole (absent, or resolving to a
// manifest whose blobs are all there). distribution itself is unchanged;
// what it gets wrong (distribution/distribution#1293) is fixed underneath:
//
//   - A new tag is written as index/<alg>/<hex>/link first and current/link
//     second, so a crash between them leaves a tag directory without a
//     current link, which the tag list would show and GET would answer 404.
//     List of a repository's _manifests/tags leaves such a tag out: a tag
//     exists when its current link does.
//   - Untag is a recursive delete whose order is readdir order. Here
//     current/link goes first (synced), then the rest: a crash in between
//     leaves a tag directory the list does not show.
//   - DELETE by digest removes the revision link and untags afterwards, so a
//     crash in between leaves tags on a manifest that no longer resolves.
//     Deleting a revision link here first untags (as above) every tag of
//     the repository whose current link names that digest.
//   - The filesystem driver syncs a file and its directory, but not the
//     directories MkdirAll created above it, nor anything after a rename
//     (Move: how an upload becomes a blob). Here every write returns only
//     when its file, the directory entries leading to it and, for a move,
//     both directories are on disk. Since each write is durable before the
//     next one starts, what survives a power cut is a prefix of the writes
//     in program order, and the orders above hold across power cuts too.
const durableFSName = "edgecrfs"

func init() {
	factory.Register(durableFSName, durableFSFactory{})
}

type durableFSFactory struct{}

func (durableFSFactory) Create(ctx context.Context, parameters map[string]any) (storagedriver.StorageDriver, error) {
	inner, err := filesystem.FromParameters(parameters)
	if err != nil {
		return nil, err
	}
	root, _ := parameters["rootdirectory"].(string)
	if root == "" {
		return nil, fmt.Errorf("configuring %s storage: rootdirectory is required", durableFSName)
	}
	return newDurableFS(inner, root), nil
}

// durableFS wraps a filesystem driver rooted at root (see durableFSName).
// inner is a parameter so that tests can put a fault-injecting driver
// between the two.
type durableFS struct {
	storagedriver.StorageDriver
	root string
	sync func(dir string) error // syncDir; tests record the calls
}

// With root "" the driver is an object store (s3store.go): the tag order
// and hiding below apply as they are, and there is nothing to sync (no
// directories; an object is durable when the store acknowledges its PUT).
func newDurableFS(inner storagedriver.StorageDriver, root string) *durableFS {
	if root == "" {
		return &durableFS{StorageDriver: inner, sync: func(string) error { return nil }}
	}
	return &durableFS{StorageDriver: inner, root: root, sync: syncDir}
}

// openDurableFS is the driver every part of edgecrd that writes the
// registry storage (GC, the UI's tag deletion, the repair) uses.
func openDurableFS(root string) *durableFS {
	return newDurableFS(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root)
}

func (d *durableFS) Name() string { return durableFSName }

var (
	tagsListRE     = regexp.MustCompile(`^` + v2Root + `/repositories/(.+)/_manifests/tags/?$`)
	tagDirRE       = regexp.MustCompile(`^` + v2Root + `/repositories/(.+)/_manifests/tags/([^/]+)/?$`)
	revisionLinkRE = regexp.MustCompile(`^` + v2Root + `/repositories/(.+)/_manifests/revisions/(sha256|sha512)/([a-f0-9]+)(/link)?/?$`)
)

func (d *durableFS) osPath(p string) string { return osPath(d.root, p) }

// missingDirs returns the directories that do not exist yet on the way
// from the root to driver path dir, outermost first.
func (d *durableFS) missingDirs(dir string) []string {
	if d.root == "" {
		return nil
	}
	var out []string
	for p := path.Clean(dir); p != "/" && p != "." && p != ""; p = path.Dir(p) {
		if _, err := os.Lstat(d.osPath(p)); err == nil {
			break
		}
		out = append([]string{p}, out...)
	}
	return out
}

// syncCreated syncs the parents of the directories a write created
// (created: missingDirs taken before it) and dir itself.
func (d *durableFS) syncCreated(dir string, created []string) error {
	seen := map[string]bool{}
	for _, p := range append(created, path.Join(dir, "x")) {
		parent := path.Dir(p)
		if seen[parent] {
			continue
		}
		seen[parent] = true
		if err := d.sync(d.osPath(parent)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory; one that does not exist (removed meanwhile)
// has nothing to sync. Windows cannot open directories for syncing: there
// it is a no-op.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !syncUnsupported(err) {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// PutContent writes p as the filesystem driver's PutContent does (a
// temporary file beside it, synced, then renamed over p), but syncs p's
// directory once: the driver's own PutContent syncs it after the rename
// and syncCreated would sync it again, a second fsync of an unchanged
// directory (each one a flush of the disk's cache) on every link and
// upload-state write, about a fifth of an image push's fsyncs. On a
// bucket (root "") the driver's PutContent is the write.
func (d *durableFS) PutContent(ctx context.Context, p string, content []byte) error {
	if d.root == "" {
		return d.StorageDriver.PutContent(ctx, p, content)
	}
	created := d.missingDirs(path.Dir(p))
	tmp := p + "." + rand.Text() + ".tmp" // skipRegistryFile and the collector know *.tmp
	w, err := d.StorageDriver.Writer(ctx, tmp, false)
	if err != nil {
		return err
	}
	_, err = w.Write(content)
	if err == nil {
		err = w.Commit(ctx) // syncs the file
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.StorageDriver.Move(ctx, tmp, p)
	}
	if err != nil {
		if rerr := os.Remove(d.osPath(tmp)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("removing %s: %w", tmp, rerr))
		}
		return err
	}
	return d.syncCreated(path.Dir(p), created)
}

func (d *durableFS) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	created := d.missingDirs(path.Dir(p))
	w, err := d.StorageDriver.Writer(ctx, p, append)
	if err != nil {
		return nil, err
	}
	return &durableWriter{FileWriter: w, d: d, dir: path.Dir(p), created: created}, nil
}

// writeCoalesce is the size of the writes an upload makes to its file.
// distribution hands its writer what each Read of the request body gave:
// at most one TLS record (16 KiB) over HTTP/1.1. Measured on the
// benchmark machine (docs/benchmarks.md), writing 256 MiB into the page
// cache took 120–145 ms of CPU in 16 KiB writes, 83–104 ms in 32 KiB and
// 66–75 ms in 64 KiB ones (larger ones were no better), against an
// estimated 20 ms (memmove at 10+ GB/s) for the copy into this buffer.
const writeCoalesce = 64 << 10

// durableWriter syncs the directories leading to the file on Commit (the
// filesystem driver syncs the file itself, on Commit and on Close), and
// gathers small writes into writeCoalesce-sized ones. What it holds is
// written before anything that reports or makes durable the file's
// contents: Size, Commit, Close.
type durableWriter struct {
	storagedriver.FileWriter
	d       *durableFS
	dir     string
	created []string
	buf     []byte // not yet written to FileWriter
	err     error  // of a write of buf; every later call fails with it
}

func (w *durableWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(w.buf)+len(p) > writeCoalesce {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= writeCoalesce {
		return w.FileWriter.Write(p)
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, writeCoalesce)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// flush writes what the writer holds.
func (w *durableWriter) flush() error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	n, err := w.FileWriter.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

// Size is what the file holds: what could not be written is not counted,
// so that the upload's Range tells the client where it really stands.
func (w *durableWriter) Size() int64 {
	_ = w.flush()
	return w.FileWriter.Size()
}

func (w *durableWriter) Commit(ctx context.Context) error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.FileWriter.Commit(ctx); err != nil {
		return err
	}
	return w.d.syncCreated(w.dir, w.created)
}

func (w *durableWriter) Close() error {
	err := w.flush()
	return errors.Join(err, w.FileWriter.Close())
}

func (w *durableWriter) Cancel(ctx context.Context) error {
	w.buf = nil
	return w.FileWriter.Cancel(ctx)
}

func (d *durableFS) Move(ctx context.Context, from, to string) error {
	created := d.missingDirs(path.Dir(to))
	if err := d.StorageDriver.Move(ctx, from, to); err != nil {
		return err
	}
	if err := d.syncCreated(path.Dir(to), created); err != nil {
		return err
	}
	return d.sync(d.osPath(path.Dir(from)))
}

func (d *durableFS) Delete(ctx context.Context, p string) error {
	if m := tagDirRE.FindStringSubmatch(p); m != nil {
		return d.untag(ctx, m[1], m[2])
	}
	if m := revisionLinkRE.FindStringSubmatch(p); m != nil {
		if err := d.untagDigest(ctx, m[1], digest(m[2]+":"+m[3])); err != nil {
			return err
		}
	}
	if err := d.StorageDriver.Delete(ctx, p); err != nil {
		return err
	}
	return d.sync(d.osPath(path.Dir(p)))
}

// untag removes a tag: its current link first (from then on the tag is
// neither listed nor resolved), then the rest of its directory.
func (d *durableFS) untag(ctx context.Context, repo, tag string) error {
	dir := path.Join(tagsDir(repo), tag)
	if _, err := d.StorageDriver.Stat(ctx, dir); err != nil {
		return err // PathNotFoundError: distribution answers "tag unknown"
	}
	err := d.StorageDriver.Delete(ctx, tagCurrentLink(repo, tag))
	if err != nil && !isNotFound(err) {
		return err
	}
	if err := d.sync(d.osPath(path.Dir(tagCurrentLink(repo, tag)))); err != nil {
		return err
	}
	if err := d.StorageDriver.Delete(ctx, dir); err != nil && !isNotFound(err) {
		return err
	}
	return d.sync(d.osPath(tagsDir(repo)))
}

// untagDigest untags every tag of repo whose current link names dg.
func (d *durableFS) untagDigest(ctx context.Context, repo string, dg digest) error {
	tags, err := d.StorageDriver.List(ctx, tagsDir(repo))
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, t := range tags {
		tag := path.Base(filepath.ToSlash(t))
		b, err := d.StorageDriver.GetContent(ctx, tagCurrentLink(repo, tag))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != dg.String() {
			continue
		}
		if err := d.untag(ctx, repo, tag); err != nil && !isNotFound(err) {
			return fmt.Errorf("untagging %s:%s before deleting %s: %w", repo, tag, dg, err)
		}
	}
	return nil
}

// List leaves out of a repository's tag list the tags without a current
// link: a first write or an untag that did not finish.
func (d *durableFS) List(ctx context.Context, p string) ([]string, error) {
	entries, err := d.StorageDriver.List(ctx, p)
	if err != nil || !tagsListRE.MatchString(p) {
		return entries, err
	}
	out := entries[:0]
	for _, e := range entries {
		link := path.Join(filepath.ToSlash(e), "current", "link")
		if _, err := d.StorageDriver.Stat(ctx, link); err == nil {
			out = append(out, e)
		} else if !isNotFound(err) {
			return nil, err
		}
	}
	return out, nil
}

// syncUnsupported reports a directory sync the platform does not offer
// (Windows cannot flush a directory handle; there a rename is already
// durable when it returns on NTFS's journal).
func syncUnsupported(err error) bool {
	return runtime.GOOS == "windows" || errors.Is(err, errors.ErrUnsupported)
}

// Walk goes through List above, as distribution's paged tag list does.
func (d *durableFS) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, d, p, f, options...)
}
