package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/edgecr/edgecr/server/kv"
)

// imageStorage is where the registry keeps images: the one place that
// knows whether that is a directory on local disk (the single-node
// default) or a bucket (State.S3, issue 12). It gives distribution its
// storage configuration and edgecrd's own code (GC, quota, uploads, the
// referrers index, the repair) a storage driver, plus the few operations
// the guard needs that are cheaper on a file system than through a driver.
//
// On local disk everything is as before: distribution runs the crash-safe
// filesystem driver (durablefs.go) on root, and sizes, existence and
// freshness are file system calls. On a bucket, distribution and edgecrd
// share one s3 driver (s3store.go), sizes are object sizes, and what
// replaces a blob's mtime for garbage collection lives in the shared state
// store (gcshared.go).
type imageStorage struct {
	root   string         // the filesystem root on local disk; "" on a bucket
	loc    *kv.S3Location // the bucket; nil on local disk
	store  kv.Store       // the shared state: GC lease and use records, quota; nil on local disk
	d      storagedriver.StorageDriver
	health *storeHealth                // nil on local disk
	raw    storagedriver.StorageDriver // the s3 driver without bounds and health, for probes; nil on local disk
	// flat is the s3 driver with bounds and health but without durableFS
	// on top: its Walk is the s3 driver's own, one ListObjectsV2 page per
	// 1000 objects under the prefix. durableFS's Walk (the one distribution
	// gets) lists every directory and stats every entry, so that it can
	// hide tags without a current link: on a bucket of 2,000 tags that was
	// more than five minutes for a sum of sizes (issue 14). nil on local disk.
	flat storagedriver.StorageDriver
}

// localImageStorage is the registry storage under root on local disk.
func localImageStorage(root string) *imageStorage {
	return &imageStorage{root: root, d: openDurableFS(root)}
}

// s3ImageStorage is the registry storage in the bucket loc, with the
// shared state store of the replicas on it.
func s3ImageStorage(ctx context.Context, loc *kv.S3Location, store kv.Store, log *slog.Logger, now func() time.Time) (*imageStorage, error) {
	if store == nil {
		return nil, fmt.Errorf("opening image storage in %s: no shared state store", loc)
	}
	if now == nil {
		now = time.Now
	}
	h := newStoreHealth(now, log)
	d, raw, err := openS3Driver(ctx, loc, h)
	if err != nil {
		return nil, err
	}
	s := &imageStorage{loc: loc, store: store, d: d, health: h, raw: raw, flat: d}
	if dfs, ok := d.(*durableFS); ok {
		s.flat = dfs.StorageDriver
	}
	h.probe = s.probe
	return s, nil
}

// openImageStorage is the registry storage of st: its bucket when it has
// one, else its storage directory.
func openImageStorage(ctx context.Context, st *State, log *slog.Logger, now func() time.Time) (*imageStorage, error) {
	if loc := st.S3(); loc != nil && !st.imagesInDir {
		return s3ImageStorage(ctx, loc, st.KV(), log, now)
	}
	return localImageStorage(st.StorageDir()), nil
}

func (s *imageStorage) local() bool { return s.root != "" }

// String names the storage for messages.
func (s *imageStorage) String() string {
	if s.local() {
		return s.root
	}
	return s.loc.String()
}

// driverSection is the storage driver entry of distribution's
// configuration. On a bucket it names the shared driver; its instance is
// set after parsing (registryConfigOn).
func (s *imageStorage) driverSection() (string, map[string]any) {
	if s.local() {
		return durableFSName, map[string]any{"rootdirectory": s.root}
	}
	return sharedDriverName, map[string]any{}
}

// probe checks that the store answers: one HEAD, a "not found" is an answer.
func (s *imageStorage) probe(ctx context.Context) error {
	if s.local() {
		_, err := os.Stat(s.root)
		return err
	}
	// The raw driver: a probe must not mark the store up or down itself.
	_, err := s.raw.Stat(ctx, "/edgecr-probe")
	if isNotFound(err) {
		return nil
	}
	return err
}

// exists reports whether anything is at driver path p.
func (s *imageStorage) exists(ctx context.Context, p string) bool {
	if s.local() {
		_, err := os.Lstat(osPath(s.root, p))
		return err == nil
	}
	_, err := s.d.Stat(ctx, p)
	return err == nil
}

// size is what the quota counts for the driver paths (directories walked):
// on local disk as DirSize does, on a bucket the objects' sizes. An upload
// session's data on a bucket is a multipart upload in progress, invisible
// until its commit: the guard counts those bytes as they stream
// (uploadAccount) and does not expect to see them here.
func (s *imageStorage) size(ctx context.Context, paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if s.local() {
			n += DirSize(osPath(s.root, p))
			continue
		}
		n += s.walkSize(ctx, p)
	}
	return n
}

// walkSize sums the sizes of the objects at or under p on a bucket from
// one flat listing (flat): every object counts, a tag being written or
// removed included.
func (s *imageStorage) walkSize(ctx context.Context, p string) int64 {
	fi, err := s.d.Stat(ctx, p)
	if err != nil {
		return 0
	}
	if !fi.IsDir() {
		return fi.Size()
	}
	var n int64
	_ = s.flat.Walk(ctx, p, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// total is the whole storage's usage: the quota's walk. On a bucket it is
// one listing request per 1000 objects.
func (s *imageStorage) total(ctx context.Context) int64 {
	if s.local() {
		return DirSize(s.root)
	}
	return s.walkSize(ctx, "/")
}

// removeAll removes whatever is at driver path p; nothing there is no error.
func (s *imageStorage) removeAll(ctx context.Context, p string) error {
	if s.local() {
		return os.RemoveAll(osPath(s.root, p))
	}
	err := s.d.Delete(ctx, p)
	if isNotFound(err) {
		return nil
	}
	return err
}

// readFile reads the file at driver path p, refusing one larger than max.
func (s *imageStorage) readFile(ctx context.Context, p string, max int64) ([]byte, error) {
	if s.local() {
		full := osPath(s.root, p)
		fi, err := os.Stat(full)
		if err != nil {
			return nil, err
		}
		if fi.Size() > max {
			return nil, fmt.Errorf("reading %s: %d bytes, more than %d", p, fi.Size(), max)
		}
		return os.ReadFile(full)
	}
	fi, err := s.d.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() || fi.Size() > max {
		return nil, fmt.Errorf("reading %s: not a file of at most %d bytes", p, max)
	}
	return s.d.GetContent(ctx, p)
}

// scanUploads finds the upload sessions: every directory in a
// repository's _uploads, with the newest modification time of the
// session, its data and its start marker.
func (s *imageStorage) scanUploads(ctx context.Context, each func(dir string, last time.Time)) {
	if s.local() {
		scanUploads(s.root, each)
		return
	}
	found := map[string]time.Time{}
	var order []string
	// The flat listing: one request per 1000 objects of repositories/ (the
	// skipped directories' objects are listed and passed over), not a
	// listing and a stat per repository and directory (7,000 requests at
	// 1,000 repositories before serve answered).
	_ = s.flat.Walk(ctx, path.Join(v2Root, "repositories"), func(fi storagedriver.FileInfo) error {
		p := fi.Path()
		i := strings.Index(p, "/_uploads/")
		if i < 0 {
			if fi.IsDir() && (path.Base(p) == "_layers" || path.Base(p) == "_manifests") {
				return storagedriver.ErrSkipDir
			}
			return nil
		}
		id, _, _ := strings.Cut(p[i+len("/_uploads/"):], "/")
		if !uploadIDRE.MatchString(id) {
			return nil
		}
		dir := p[:i+len("/_uploads/")] + id
		last, seen := found[dir]
		if !seen {
			order = append(order, dir)
		}
		if !fi.IsDir() && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
		found[dir] = last
		return nil
	})
	for _, dir := range order {
		each(dir, found[dir])
	}
}

// StorageUsed is the registry storage's usage as the quota counts it:
// DirSize of the storage dir on local disk, the objects' sizes in the
// bucket (one listing per 1000 objects). `edgecrd info` shows it.
func (s *State) StorageUsed(ctx context.Context) (int64, error) {
	st, err := openImageStorage(ctx, s, nil, nil)
	if err != nil {
		return 0, err
	}
	if !st.local() {
		if err := st.probe(ctx); err != nil {
			return 0, fmt.Errorf("measuring image storage in %s: %w", st, err)
		}
	}
	return st.total(ctx), nil
}
