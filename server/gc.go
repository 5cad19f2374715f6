package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"golang.org/x/sync/errgroup"
)

// Garbage collection, safe while the registry serves pushes.
//
// Mark: every manifest that is kept marks itself, its config and layers
// and, for an index, its children recursively with their own blobs. All
// manifests are kept, or with DeleteUntagged only those a tag reaches
// (directly or through a tagged index), those younger than the grace
// period, and OCI referrers whose subject is kept.
//
// Sweep: an unmarked blob goes only when its data file is older than the
// grace period. The running server keeps that age meaningful: before it
// tells a client that a blob or manifest exists, and before distribution
// links one into a new manifest, it refreshes the file's mtime (gcguard.go).
// So a blob that a push is about to reference is young, whenever the
// collector looks.
//
// The remaining race, a refresh between the collector's age check and its
// delete, is closed by moving instead of deleting: an item is renamed into
// a trash directory (atomic on one filesystem), its age is checked again
// there, and it is put back if it was refreshed in between. A refresh that
// comes after the rename finds no file and the server answers "unknown",
// as it would after the delete. Anything found in the trash at the start of
// a run (a collector that died) is put back, never deleted unseen.
//
// Missing files are "already done" everywhere: the collector and the
// server's own deletions race harmlessly.

// DefaultGCGrace is how old unreferenced content must be before a
// collection removes it.
const DefaultGCGrace = time.Hour

// GCOptions configure one garbage collection.
type GCOptions struct {
	DryRun         bool          // report what would go, change nothing
	DeleteUntagged bool          // also remove manifests no tag reaches
	Grace          time.Duration // never remove anything younger; must not be negative
	// UploadAge is how long an upload may sit without a write before it is
	// purged; zero means the larger of Grace and 24 h.
	UploadAge time.Duration
	Trigger   string // who started the run, recorded in the report ("command", "schedule")
	Logger    *slog.Logger
	Now       func() time.Time

	// beforeRemove, in tests, runs just before the collector takes an item
	// (a driver path) out of the layout.
	beforeRemove func(driverPath string)
	// openDriver, in tests, opens the storage (crash injection).
	openDriver func(root string) storagedriver.StorageDriver
}

// GCManifest names a manifest a collection removed.
type GCManifest struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
}

// GCBlob names a blob a collection removed.
type GCBlob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// GCSummary is the outcome of a collection in numbers; gc.json in the
// data dir holds the last one that was not a dry run. For a dry run,
// "deleted" means "would be deleted".
type GCSummary struct {
	ID                string    `json:"id"`
	Trigger           string    `json:"trigger,omitempty"`
	Started           time.Time `json:"started"`
	Finished          time.Time `json:"finished"`
	DurationSeconds   float64   `json:"durationSeconds"`
	DryRun            bool      `json:"dryRun"`
	DeleteUntagged    bool      `json:"deleteUntagged"`
	Grace             string    `json:"grace"`
	Repositories      int       `json:"repositories"`
	Manifests         int       `json:"manifests"`   // manifests seen (revisions, summed over repositories)
	BlobsMarked       int       `json:"blobsMarked"` // distinct digests referenced by kept manifests
	ReclaimedBytes    int64     `json:"reclaimedBytes"`
	BlobsDeleted      int       `json:"blobsDeleted"`
	ManifestsDeleted  int       `json:"manifestsDeleted"`
	LayerLinksDeleted int       `json:"layerLinksDeleted"`
	UploadsPurged     int       `json:"uploadsPurged"`
	UploadBytesPurged int64     `json:"uploadBytesPurged"` // part of ReclaimedBytes
	SkippedYoung      int       `json:"skippedYoung"`      // unreferenced blobs younger than the grace period
	Restored          int       `json:"restored"`          // taken out, then put back because a client used them meanwhile
	Failures          int       `json:"failures"`          // items that could not be removed; the run went on
}

// GCReport is a GCSummary with the names of what was removed.
type GCReport struct {
	GCSummary
	DeletedManifests []GCManifest `json:"deletedManifests"`
	DeletedBlobs     []GCBlob     `json:"deletedBlobs"`
	Errors           []string     `json:"errors"`
}

// Duration is how long the run took.
func (r *GCSummary) Duration() time.Duration {
	return time.Duration(r.DurationSeconds * float64(time.Second))
}

// ErrGCIncomplete is returned (with the report) when some items could not
// be removed; everything else was collected.
var ErrGCIncomplete = errors.New("garbage collection incomplete")

// CollectGarbage runs one collection on the registry storage under
// storageRoot (the filesystem driver's root directory). An error before
// the sweep leaves storage untouched.
func CollectGarbage(ctx context.Context, storageRoot string, o GCOptions) (*GCReport, error) {
	o, id, err := o.prepare()
	if err != nil {
		return nil, err
	}
	// The plain filesystem driver, not edgecrfs: the collector needs no
	// fsync. Every state a power cut can bring back is one a restart
	// handles: a move aside undone (the item is where it was: garbage for
	// the next run), a put-back undone (the item is in the trash: the
	// repair on start puts it back), a deletion undone (garbage again).
	// And an fsync inside the move aside would widen the moment in which
	// a blob a client was just told exists is out of the layout
	// (TestGCConcurrentWithPushes failed one run in two with it).
	var d storagedriver.StorageDriver = filesystem.New(filesystem.DriverParameters{RootDirectory: storageRoot, MaxThreads: 100})
	if o.openDriver != nil {
		d = o.openDriver(storageRoot)
	}
	return runCollector(ctx, d, nil, id, o)
}

// prepare checks o, fills in its defaults and makes a run id.
func (o GCOptions) prepare() (GCOptions, string, error) {
	if o.Grace < 0 {
		return o, "", fmt.Errorf("garbage collection: grace period %s is negative", o.Grace)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.UploadAge <= 0 {
		o.UploadAge = max(o.Grace, 24*time.Hour)
	}
	id, err := randomHex(8)
	return o, id, err
}

// runCollector runs one collection with driver d; sh is the shared side
// on a bucket (gcshared.go), nil on local disk.
func runCollector(ctx context.Context, d storagedriver.StorageDriver, sh *gcShared, id string, o GCOptions) (*GCReport, error) {
	now := o.Now()
	workers := 1
	if sh != nil {
		workers = gcWorkers
	}
	c := &collector{
		sh:        sh,
		workers:   workers,
		ctx:       ctx,
		d:         d,
		o:         o,
		log:       o.Logger,
		now:       now,
		cutoff:    now.Add(-o.Grace),
		trash:     path.Join(trashRoot, id),
		manifests: map[digest]*manifestNode{},
		rep: &GCReport{
			GCSummary: GCSummary{
				ID: id, Trigger: o.Trigger, Started: now.UTC(), DryRun: o.DryRun, DeleteUntagged: o.DeleteUntagged,
				Grace: o.Grace.String(),
			},
			DeletedManifests: []GCManifest{}, DeletedBlobs: []GCBlob{}, Errors: []string{},
		},
	}
	start := time.Now()
	err := c.run()
	c.rep.Finished = c.rep.Started.Add(time.Since(start))
	c.rep.DurationSeconds = time.Since(start).Seconds()
	if err != nil {
		return c.rep, err
	}
	if len(c.rep.Errors) > 0 {
		return c.rep, fmt.Errorf("%w: %d item(s) could not be removed: %s", ErrGCIncomplete, len(c.rep.Errors), c.rep.Errors[0])
	}
	return c.rep, nil
}

type collector struct {
	sh          *gcShared // on a bucket: lease, use records and markers instead of mtimes and the trash
	ctx         context.Context
	d           storagedriver.StorageDriver
	o           GCOptions
	log         *slog.Logger
	now, cutoff time.Time
	trash       string
	workers     int // items handled at once: gcWorkers on a bucket, 1 on local disk

	mu        sync.Mutex // guards rep and manifests while workers run
	rep       *GCReport
	manifests map[digest]*manifestNode
	items     keyLocks // on a bucket: one decision at a time per marker key
}

// gcWorkers is how many items a collection on a bucket handles at once:
// repositories scanned and marked, blobs and links decided. Each item is
// several round trips to the object store and the state store (a stat,
// the marker written, the use record read, the delete, the marker
// removed): one after another that was 65–79 ms an item on a loaded MinIO
// at 1,000–2,000 tags, 7 minutes for 2,000 (issue 14). The items are
// independent: each is decided under its own marker, and items that share
// a marker (one blob's layer links in several repositories, one manifest
// untagged in several) are decided one after another (keyLocks). On local
// disk a collection handles one item at a time, as before: a rename and
// an fsync gain little from threads and the crash tests count steps.
var gcWorkers = 16

// parallel runs f(0) … f(n-1), up to c.workers at a time (in order when
// one), and returns the first error; after an error no further f starts.
func (c *collector) parallel(n int, f func(i int) error) error {
	if c.workers <= 1 {
		for i := range n {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	g.SetLimit(c.workers)
	var failed atomic.Bool
	for i := range n {
		if failed.Load() {
			break
		}
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			err := f(i)
			if err != nil {
				failed.Store(true)
			}
			return err
		})
	}
	return g.Wait()
}

// keyLocks are mutexes by name, created on first use and dropped when
// nobody holds or waits for them.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
}

func (k *keyLocks) unlock(key string) {
	k.mu.Lock()
	l := k.m[key]
	l.refs--
	if l.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
	l.Unlock()
}

// count changes the report under the lock workers share.
func (c *collector) count(f func(r *GCReport)) {
	c.mu.Lock()
	f(c.rep)
	c.mu.Unlock()
}

// manifestNode is a manifest as the collector read it.
type manifestNode struct {
	refs     manifestRefs
	mtime    time.Time // of its blob data
	leaf     bool      // missing, oversized or not a manifest: marked, not followed
	parseErr error
}

// repoScan is one repository as listed at mark time.
type repoScan struct {
	name      string
	revisions map[digest]time.Time // manifest digest -> revision link mtime
	tags      map[string]digest
	layers    map[digest]time.Time // blob digest -> layer link mtime
	kept      map[digest]bool      // kept manifests
	refs      map[digest]bool      // everything kept manifests reference, themselves included
	referrers map[digest][]digest  // subject -> revisions whose subject it is (OCI referrers)
	aliases   map[digest][]digest  // sha256 revision -> sha512 revisions linked to it (sha512.go)
}

func (c *collector) run() error {
	if err := c.recoverTrash(); err != nil {
		return err
	}
	repos, err := c.repositories()
	if err != nil {
		return err
	}
	c.rep.Repositories = len(repos)
	scans := make([]*repoScan, len(repos))
	err = c.parallel(len(repos), func(i int) error {
		s, err := c.scanRepo(repos[i])
		scans[i] = s
		return err
	})
	if err != nil {
		return err
	}
	for _, s := range scans {
		c.rep.Manifests += len(s.revisions)
	}

	if err := c.parallel(len(scans), func(i int) error { return c.mark(scans[i]) }); err != nil {
		return err
	}
	marked := map[digest]bool{}
	for _, s := range scans {
		for d := range s.refs {
			marked[d] = true
		}
	}
	c.rep.BlobsMarked = len(marked)
	c.log.Debug("gc marked", "repositories", len(scans), "manifests", c.rep.Manifests, "blobs", len(marked))

	// Nothing has been changed up to here; from here on a failing item is
	// recorded and the run goes on.
	if c.o.DeleteUntagged {
		if err := c.parallel(len(scans), func(i int) error { return c.deleteUntagged(scans[i]) }); err != nil {
			return err
		}
		for _, s := range scans {
			for d := range s.refs { // manifests put back keep their blobs
				marked[d] = true
			}
		}
	}
	swept, err := c.sweepBlobs(marked)
	if err != nil {
		return err
	}
	err = c.parallel(len(scans), func(i int) error {
		s := scans[i]
		if err := c.sweepLayerLinks(s, swept); err != nil {
			return err
		}
		if err := c.purgeUploads(s.name); err != nil {
			return err
		}
		return c.pruneReferrers(s.name) // referrers_gc.go
	})
	if err != nil {
		return err
	}
	if !c.o.DryRun && c.sh == nil {
		if err := c.d.Delete(c.ctx, c.trash); err != nil && !isNotFound(err) {
			c.fail("removing trash %s: %v", c.trash, err)
		}
	}
	return c.ctx.Err()
}

func (c *collector) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.log.Warn("gc: " + msg)
	c.count(func(r *GCReport) {
		r.Errors = append(r.Errors, msg)
		r.Failures++
	})
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// list returns the base names under p; a missing directory is empty.
func (c *collector) list(p string) ([]string, error) {
	entries, err := c.d.List(c.ctx, p)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", p, err)
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, path.Base(strings.ReplaceAll(e, "\\", "/")))
	}
	slices.Sort(out)
	return out, nil
}

// stat returns the entry's info, or nil when it does not exist.
func (c *collector) stat(p string) (storagedriver.FileInfo, error) {
	fi, err := c.d.Stat(c.ctx, p)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", p, err)
	}
	return fi, nil
}

// repositories walks repositories/ for directories holding _manifests,
// _layers or _uploads (a repository whose first push is still running has
// no _manifests yet, so distribution's own enumerator would miss it).
func (c *collector) repositories() ([]string, error) {
	var out []string
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		names, err := c.list(path.Join(v2Root, "repositories", rel))
		if err != nil {
			return err
		}
		isRepo := false
		for _, n := range names {
			switch {
			case n == "_manifests" || n == "_layers" || n == "_uploads":
				isRepo = true
			case strings.HasPrefix(n, "_"):
			default:
				if err := walk(path.Join(rel, n)); err != nil {
					return err
				}
			}
		}
		if isRepo && rel != "" {
			out = append(out, rel)
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, fmt.Errorf("enumerating repositories: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// digestsUnder lists <dir>/<algorithm>/<hex> entries as digests with the
// mtime of the file named leaf inside each; entries without it are skipped.
func (c *collector) digestsUnder(dir, leaf string) (map[digest]time.Time, error) {
	if c.sh != nil {
		return c.digestsListed(dir, leaf)
	}
	out := map[digest]time.Time{}
	algs, err := c.list(dir)
	if err != nil {
		return nil, err
	}
	for _, alg := range algs {
		hexes, err := c.list(path.Join(dir, alg))
		if err != nil {
			return nil, err
		}
		for _, h := range hexes {
			d, err := parseDigest(alg + ":" + h)
			if err != nil {
				continue // not something distribution wrote
			}
			fi, err := c.stat(path.Join(dir, alg, h, leaf))
			if err != nil {
				return nil, err
			}
			if fi != nil {
				out[d] = fi.ModTime()
			}
		}
	}
	return out, nil
}

// digestsListed is digestsUnder on a bucket: one flat listing of dir (a
// request per 1000 objects, each with its size and LastModified) instead
// of a listing per directory and a HEAD per entry.
func (c *collector) digestsListed(dir, leaf string) (map[digest]time.Time, error) {
	out := map[digest]time.Time{}
	err := c.d.Walk(c.ctx, dir, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(fi.Path(), dir+"/")
		parts := strings.Split(rel, "/")
		if len(parts) != 3 || parts[2] != leaf {
			return nil
		}
		if d, err := parseDigest(parts[0] + ":" + parts[1]); err == nil {
			out[d] = fi.ModTime()
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return out, nil
}

func (c *collector) scanRepo(name string) (*repoScan, error) {
	s := &repoScan{name: name, kept: map[digest]bool{}, refs: map[digest]bool{}}
	var err error
	if s.revisions, err = c.digestsUnder(path.Join(repoDir(name), "_manifests", "revisions"), "link"); err != nil {
		return nil, fmt.Errorf("scanning repository %s: %w", name, err)
	}
	if s.layers, err = c.digestsUnder(path.Join(repoDir(name), "_layers"), "link"); err != nil {
		return nil, fmt.Errorf("scanning repository %s: %w", name, err)
	}
	if s.tags, err = c.readTags(name); err != nil {
		return nil, fmt.Errorf("scanning repository %s: %w", name, err)
	}
	return s, nil
}

// readTags reads every tag's current link. A tag that vanishes while being
// read is skipped.
func (c *collector) readTags(repo string) (map[string]digest, error) {
	tags, err := c.list(tagsDir(repo))
	if err != nil {
		return nil, err
	}
	out := make(map[string]digest, len(tags))
	for _, t := range tags {
		b, err := c.d.GetContent(c.ctx, tagCurrentLink(repo, t))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading tag %s: %w", t, err)
		}
		d, err := parseDigest(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("reading tag %s: %w", t, err)
		}
		out[t] = d
	}
	return out, nil
}

// manifest reads and parses a manifest once per run. Content that is
// missing, larger than a manifest can be or not JSON is a leaf: marked,
// with nothing to follow.
func (c *collector) manifest(d digest) (*manifestNode, error) {
	c.mu.Lock()
	n, ok := c.manifests[d]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	n = &manifestNode{leaf: true}
	fi, err := c.stat(blobDataPath(d))
	if err != nil {
		return nil, err
	}
	if fi != nil {
		n.mtime = fi.ModTime()
		if fi.Size() <= maxManifestSize {
			b, err := c.d.GetContent(c.ctx, blobDataPath(d))
			switch {
			case isNotFound(err):
			case err != nil:
				return nil, fmt.Errorf("reading manifest %s: %w", d, err)
			default:
				n.refs, n.parseErr = parseManifestRefs(b)
				n.leaf = n.parseErr != nil
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if first, ok := c.manifests[d]; ok { // another worker read it meanwhile
		return first, nil
	}
	c.manifests[d] = n
	return n, nil
}

// young reports whether a manifest of s was written or used within the
// grace period.
func (c *collector) youngManifest(n *manifestNode, linkTime time.Time) bool {
	return !linkTime.Before(c.cutoff) || !n.mtime.Before(c.cutoff)
}

// mark computes s.kept and s.refs. A revision whose content cannot be
// parsed stops the run: its references are unknown, so nothing is safe
// to delete.
func (c *collector) mark(s *repoScan) error {
	nodes := make(map[digest]*manifestNode, len(s.revisions))
	s.referrers = map[digest][]digest{}
	s.aliases = map[digest][]digest{}
	for d := range s.revisions {
		n, err := c.manifest(d)
		if err != nil {
			return err
		}
		if n.parseErr != nil {
			return fmt.Errorf("repository %s: manifest %s: %w; nothing was deleted", s.name, d, n.parseErr)
		}
		nodes[d] = n
		if sub := n.refs.subject; sub != "" {
			s.referrers[sub] = append(s.referrers[sub], d)
		}
		cd, err := c.canonicalManifest(s.name, d)
		if err != nil {
			return err
		}
		if cd != "" {
			s.aliases[cd] = append(s.aliases[cd], d)
		}
	}
	var roots []digest
	for _, d := range s.tags {
		roots = append(roots, d)
	}
	for d, linkTime := range s.revisions {
		if !c.o.DeleteUntagged || c.youngManifest(nodes[d], linkTime) {
			roots = append(roots, d)
		}
	}
	return c.reachable(s, roots)
}

// reachable adds roots and everything they reach to s.kept / s.refs: an
// index's children, every manifest's blobs, and the referrers (OCI 1.1
// subject) of every kept manifest, recursively. It is the one rule of
// what is kept, for the mark and for deleteUntagged's re-check alike.
func (c *collector) reachable(s *repoScan, roots []digest) error {
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.kept[d] {
			continue
		}
		s.kept[d] = true
		s.refs[d] = true
		n, err := c.manifest(d)
		if err != nil {
			return err
		}
		for _, b := range n.refs.blobs {
			s.refs[b] = true
			cb, err := c.canonicalBlob(s.name, b) // sha512.go
			if err != nil {
				return err
			}
			if cb != "" {
				s.refs[cb] = true
			}
		}
		stack = append(stack, n.refs.manifests...)
		stack = append(stack, s.referrers[d]...)
		stack = append(stack, s.aliases[d]...)
		if cd, err := c.canonicalManifest(s.name, d); err != nil { // sha512.go
			return err
		} else if cd != "" {
			stack = append(stack, cd)
		}
	}
	return nil
}

// retry runs op up to three times; "not found" counts as done.
func (c *collector) retry(op func() error) error {
	var err error
	for i, wait := range []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond} {
		if i > 0 {
			select {
			case <-c.ctx.Done():
				return c.ctx.Err()
			case <-time.After(wait):
			}
		}
		if err = op(); err == nil || isNotFound(err) {
			return nil
		}
	}
	return err
}

// takeOut moves the item at p into this run's trash. It reports false
// when the item is already gone.
func (c *collector) takeOut(p string) (bool, error) {
	if c.o.beforeRemove != nil {
		c.o.beforeRemove(p)
	}
	if c.sh != nil {
		// On a bucket the item stays where it is, under a marker that
		// makes a replica about to use it wait for the decision. The
		// marker's key is held from here to putBack or dispose.
		key := gcItemKey(p)
		c.items.lock(key)
		fi, err := c.stat(p)
		if err == nil && fi != nil {
			err = c.sh.doom(c.ctx, p)
			if err == nil {
				return true, nil
			}
		}
		c.items.unlock(key)
		return false, err
	}
	if fi, err := c.stat(p); err != nil || fi == nil {
		return false, err
	}
	err := c.d.Move(c.ctx, p, c.trashPath(p))
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("moving %s aside: %w", p, err)
	}
	return true, nil
}

func (c *collector) trashPath(p string) string {
	if c.sh != nil {
		return p
	}
	return path.Join(c.trash, strings.TrimPrefix(p, v2Root+"/"))
}

// putBack returns an item from the trash. When the original path exists
// again (a client re-created the same content meanwhile), the trash copy
// is redundant: content-addressed items are identical.
func (c *collector) putBack(p string) error {
	c.count(func(r *GCReport) { r.Restored++ })
	if c.sh != nil {
		defer c.items.unlock(gcItemKey(p))
		return c.sh.undoom(c.ctx, p)
	}
	return c.restore(c.trashPath(p), p)
}

func (c *collector) restore(from, to string) error {
	fi, err := c.stat(to)
	if err != nil {
		return err
	}
	if fi == nil {
		err = c.d.Move(c.ctx, from, to)
		if err == nil || isNotFound(err) {
			return nil
		}
		// Lost a race with a re-creation: fall through and drop our copy.
		if fi, serr := c.stat(to); serr != nil || fi == nil {
			return fmt.Errorf("restoring %s: %w", to, err)
		}
	}
	return c.retry(func() error { return c.d.Delete(c.ctx, from) })
}

// dispose deletes a trashed item for good.
func (c *collector) dispose(p string) error {
	if c.sh != nil {
		defer c.items.unlock(gcItemKey(p))
		if err := c.sh.lease.valid(); err != nil {
			_ = c.sh.undoom(c.ctx, p)
			return err
		}
		if err := c.retry(func() error { return c.d.Delete(c.ctx, p) }); err != nil {
			return err
		}
		return c.sh.undoom(c.ctx, p)
	}
	return c.retry(func() error { return c.d.Delete(c.ctx, c.trashPath(p)) })
}

// recoverTrash puts back whatever an earlier run left in the trash: it
// died between moving an item aside and re-checking it.
func (c *collector) recoverTrash() error {
	if c.sh != nil {
		if c.o.DryRun {
			return nil
		}
		n, err := c.sh.clearStale(c.ctx)
		if n > 0 {
			c.log.Info("gc: removed the markers of an interrupted run", "markers", n)
		}
		return err
	}
	runs, err := c.list(trashRoot)
	if err != nil {
		return err
	}
	for _, run := range runs {
		if c.o.DryRun {
			c.log.Info("gc: trash of an interrupted run would be restored", "run", run)
			continue
		}
		base := path.Join(trashRoot, run)
		var items []string // item dirs: the parents of "data" and "link" files; referrers index entries
		err := storagedriver.WalkFallback(c.ctx, c.d, base, func(fi storagedriver.FileInfo) error {
			switch n := path.Base(fi.Path()); {
			case fi.IsDir():
			case n == "data" || n == "link":
				items = append(items, path.Dir(fi.Path()))
			case isReferrerEntry(fi.Path()): // referrers_gc.go
				items = append(items, fi.Path())
			}
			return nil
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("recovering trash %s: %w", base, err)
		}
		for _, it := range items {
			orig := path.Join(v2Root, strings.TrimPrefix(it, base+"/"))
			if err := c.restore(it, orig); err != nil {
				return fmt.Errorf("recovering trash: %w", err)
			}
		}
		if err := c.d.Delete(c.ctx, base); err != nil && !isNotFound(err) {
			return fmt.Errorf("recovering trash %s: %w", base, err)
		}
		c.log.Info("gc: restored the trash of an interrupted run", "run", run, "items", len(items))
	}
	return nil
}

// deleteUntagged removes the revisions of s that are not kept. They are
// moved aside together; then the tags are read again and every candidate
// that a tag now reaches, or that a client used meanwhile, goes back, and
// is kept (with what it references) for the rest of the run.
func (c *collector) deleteUntagged(s *repoScan) error {
	var cands []digest
	for d := range s.revisions {
		if !s.kept[d] {
			cands = append(cands, d)
		}
	}
	slices.Sort(cands)
	if c.o.DryRun {
		for _, d := range cands {
			c.deletedManifest(s.name, d)
		}
		return nil
	}
	var out []digest
	for _, d := range cands {
		ok, err := c.takeOut(revisionLinkDir(s.name, d))
		if err != nil {
			c.fail("repository %s: manifest %s: %v", s.name, d, err)
			if err := c.reachable(s, []digest{d}); err != nil {
				return err
			}
			continue
		}
		if ok {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil
	}
	// What goes back: what a tag reaches now, what a client used
	// meanwhile, and whatever those reach (a signature of an image tagged
	// during the run goes back with the image).
	current := &repoScan{name: s.name, kept: map[digest]bool{}, refs: map[digest]bool{}, referrers: s.referrers, aliases: s.aliases}
	tags, err := c.readTags(s.name)
	if err == nil {
		var roots []digest
		for _, d := range tags {
			roots = append(roots, d)
		}
		for _, d := range out {
			used, uerr := c.usedSince(path.Join(c.trashPath(revisionLinkDir(s.name, d)), "link"), blobDataPath(d))
			if uerr != nil {
				c.fail("repository %s: manifest %s: %v", s.name, d, uerr)
			}
			if uerr != nil || used {
				roots = append(roots, d)
			}
		}
		err = c.reachable(current, roots)
	}
	if err != nil {
		// Cannot prove them untagged: put everything back.
		for _, d := range out {
			if err := c.putBack(revisionLinkDir(s.name, d)); err != nil {
				c.fail("repository %s: %v", s.name, err)
			}
		}
		c.fail("repository %s: re-reading tags: %v", s.name, err)
		return c.reachable(s, out)
	}
	for _, d := range out {
		p := revisionLinkDir(s.name, d)
		if current.kept[d] {
			if err := c.putBack(p); err != nil {
				c.fail("repository %s: %v", s.name, err)
			}
			if err := c.reachable(s, []digest{d}); err != nil {
				return err
			}
			continue
		}
		if err := c.dispose(p); err != nil {
			c.fail("repository %s: deleting manifest %s: %v", s.name, d, err)
			if err := c.reachable(s, []digest{d}); err != nil { // it may still be there
				return err
			}
			continue
		}
		for t := range c.allTags(s.name) {
			if err := c.d.Delete(c.ctx, tagIndexEntryDir(s.name, t, d)); err != nil && !isNotFound(err) {
				c.fail("repository %s: tag %s: removing index entry %s: %v", s.name, t, d, err)
			}
		}
		c.deletedManifest(s.name, d)
	}
	return nil
}

func (c *collector) deletedManifest(repo string, d digest) {
	c.count(func(r *GCReport) {
		r.ManifestsDeleted++
		r.DeletedManifests = append(r.DeletedManifests, GCManifest{repo, d.String()})
	})
}

func (c *collector) allTags(repo string) map[string]bool {
	names, _ := c.list(tagsDir(repo))
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// usedSince reports whether any of the files was modified (written or
// refreshed by the server) within the grace period. Missing files say no.
func (c *collector) usedSince(paths ...string) (bool, error) {
	for _, p := range paths {
		fi, err := c.stat(p)
		if err != nil {
			return false, err
		}
		if fi != nil && !fi.ModTime().Before(c.cutoff) {
			return true, nil
		}
		if c.sh != nil {
			if used, err := c.sh.usedSince(c.ctx, p, c.cutoff); err != nil || used {
				return used, err
			}
		}
	}
	return false, nil
}

// sweepBlobs removes unmarked blobs older than the grace period and
// returns the digests it removed.
func (c *collector) sweepBlobs(marked map[digest]bool) (map[digest]bool, error) {
	swept := map[digest]bool{}
	blobsRoot := path.Join(v2Root, "blobs")
	algs, err := c.list(blobsRoot)
	if err != nil {
		return nil, err
	}
	var dirs []string // <alg>/<two hex digits>
	for _, alg := range algs {
		prefixes, err := c.list(path.Join(blobsRoot, alg))
		if err != nil {
			return nil, err
		}
		for _, pre := range prefixes {
			dirs = append(dirs, path.Join(alg, pre))
		}
	}
	type cand struct {
		d    digest
		size int64
	}
	found := make([][]cand, len(dirs))
	err = c.parallel(len(dirs), func(i int) error {
		alg := path.Dir(dirs[i])
		hexes, err := c.list(path.Join(blobsRoot, dirs[i]))
		if err != nil {
			return err
		}
		for _, h := range hexes {
			d, err := parseDigest(alg + ":" + h)
			if err != nil || marked[d] {
				continue
			}
			fi, err := c.stat(blobDataPath(d))
			if err != nil {
				return err
			}
			switch {
			case fi == nil:
			case !fi.ModTime().Before(c.cutoff):
				c.count(func(r *GCReport) { r.SkippedYoung++ })
			default:
				found[i] = append(found[i], cand{d, fi.Size()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cands := slices.Concat(found...)
	var sweptMu sync.Mutex
	err = c.parallel(len(cands), func(i int) error {
		cd := cands[i]
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if c.sweepBlob(cd.d, cd.size) {
			sweptMu.Lock()
			swept[cd.d] = true
			sweptMu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return swept, nil
}

// sweepBlob removes the unmarked blob d found old, unless it was used
// meanwhile, and reports whether it did. Failures are recorded.
func (c *collector) sweepBlob(d digest, size int64) bool {
	if c.o.DryRun {
		c.deletedBlob(d, size)
		return true
	}
	p := blobDir(d)
	ok, err := c.takeOut(p)
	if err != nil {
		c.fail("blob %s: %v", d, err)
		return false
	}
	if !ok {
		return false // gone already: done
	}
	fi, err := c.stat(path.Join(c.trashPath(p), "data"))
	if err == nil && c.sh != nil && (fi == nil || fi.ModTime().Before(c.cutoff)) {
		var used bool
		if used, err = c.sh.usedSince(c.ctx, p, c.cutoff); err == nil && used {
			c.count(func(r *GCReport) { r.SkippedYoung++ })
			if err := c.putBack(p); err != nil {
				c.fail("blob %s: %v", d, err)
			}
			c.count(func(r *GCReport) { r.Restored-- })
			return false
		}
	}
	if err != nil || fi != nil && !fi.ModTime().Before(c.cutoff) {
		if err != nil {
			c.fail("blob %s: %v", d, err)
		}
		if err := c.putBack(p); err != nil {
			c.fail("blob %s: %v", d, err)
		}
		return false
	}
	if err := c.dispose(p); err != nil {
		c.fail("deleting blob %s: %v", d, err)
		return false
	}
	c.deletedBlob(d, size)
	if c.sh != nil {
		c.sh.forget(c.ctx, d)
	}
	return true
}

func (c *collector) deletedBlob(d digest, size int64) {
	c.count(func(r *GCReport) {
		r.BlobsDeleted++
		r.ReclaimedBytes += size
		r.DeletedBlobs = append(r.DeletedBlobs, GCBlob{d.String(), size})
	})
}

// sweepLayerLinks removes a repository's links to blobs none of its kept
// manifests reference, once the link is older than the grace period: the
// links of swept blobs (so that HEAD on the repository answers 404 from
// the link alone) and links that would let the repository serve another
// repository's blob after its own image was deleted.
func (c *collector) sweepLayerLinks(s *repoScan, swept map[digest]bool) error {
	ds := make([]digest, 0, len(s.layers))
	for d := range s.layers {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	for _, d := range ds {
		if s.refs[d] || !s.layers[d].Before(c.cutoff) {
			continue
		}
		if c.o.DryRun {
			c.count(func(r *GCReport) { r.LayerLinksDeleted++ })
			continue
		}
		p := layerLinkDir(s.name, d)
		ok, err := c.takeOut(p)
		if err != nil {
			c.fail("repository %s: layer link %s: %v", s.name, d, err)
			continue
		}
		if !ok {
			continue
		}
		used, err := c.usedSince(path.Join(c.trashPath(p), "link"))
		if err == nil && !used && !swept[d] {
			// The blob stays: if a client touched it meanwhile (through
			// this repository), keep the link too.
			used, err = c.usedSince(blobDataPath(d))
		}
		if err != nil || used {
			if err != nil {
				c.fail("repository %s: layer link %s: %v", s.name, d, err)
			}
			if err := c.putBack(p); err != nil {
				c.fail("repository %s: %v", s.name, err)
			}
			continue
		}
		if err := c.dispose(p); err != nil {
			c.fail("repository %s: deleting layer link %s: %v", s.name, d, err)
			continue
		}
		c.count(func(r *GCReport) { r.LayerLinksDeleted++ })
	}
	return nil
}

// purgeUploads removes uploads of repo that nothing has written to for
// UploadAge.
func (c *collector) purgeUploads(repo string) error {
	ids, err := c.list(uploadsDir(repo))
	if err != nil {
		c.fail("repository %s: listing uploads: %v", repo, err)
		return nil
	}
	limit := c.now.Add(-c.o.UploadAge)
	for _, id := range ids {
		dir := path.Join(uploadsDir(repo), id)
		var newest time.Time
		var size int64
		for _, f := range []string{dir, path.Join(dir, "data"), path.Join(dir, "startedat")} {
			fi, err := c.stat(f)
			if err != nil {
				return err
			}
			if fi == nil {
				continue
			}
			if fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
			if !fi.IsDir() {
				size += fi.Size()
			}
		}
		if newest.IsZero() || !newest.Before(limit) {
			continue
		}
		if !c.o.DryRun {
			if err := c.retry(func() error { return c.d.Delete(c.ctx, dir) }); err != nil {
				c.fail("repository %s: purging upload %s: %v", repo, id, err)
				continue
			}
		}
		c.count(func(r *GCReport) {
			r.UploadsPurged++
			r.UploadBytesPurged += size
			r.ReclaimedBytes += size
		})
	}
	return nil
}
