package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
)

// The image index: what the web UI's Images page lists, kept in memory so
// that a view reads no storage but the repositories written since the last
// one (issue 14: 10,000 tags in 1,000 repositories, < 200 ms a view).
//
// What keeps it right:
//
//   - This server's own writes mark their repository changed as they
//     finish: a manifest PUT or DELETE through the registry (a push, a tag,
//     a referrer, a delete, sync and pull-through, which go through the same
//     guard) and a delete from the UI. The next view lists that repository
//     again before it answers (a few tags: a few reads).
//   - A garbage collection, this server's or another process's (noticed by
//     the storage loop), starts a rebuild at once.
//   - What this server cannot see, writes by other replicas on the bucket,
//     shows within the index's age: a view of an index older than that
//     starts a rebuild and waits for it up to imageIndexStaleWait, then
//     answers from the index it has (a large registry's rebuild lands a
//     moment later; its duration is on the page). When the last build
//     took longer than that wait, the view does not wait at all. By default the age is
//     ten times the last rebuild's duration, at least 2 s and at most
//     DefaultImageIndexAge: a small registry shows other replicas' writes
//     on the next view, a large one is not rebuilt more than a tenth of the
//     time. A server builds its index when it starts, so the first view
//     does not wait, unless it comes before that build ends.
//
// A rebuild lists every repository and tag, but reads a manifest only the
// first time it sees it in a repository: a manifest's content never changes
// under its digest (manifestMemo).

// DefaultImageIndexAge is the bound on how old the Images page's index may
// be before a view refreshes it (writes by other replicas on a bucket).
const DefaultImageIndexAge = 30 * time.Second

// imageIndexMinAge is the least age of the default (adaptive) bound, and
// imageIndexStaleWait how long a view of an older index waits for the
// rebuild it starts.
const (
	imageIndexMinAge    = 2 * time.Second
	imageIndexStaleWait = 2 * time.Second
)

// imageIndex is the Images page's list of repositories.
type imageIndex struct {
	ctx    context.Context // the server's: builds end with it
	open   func(ctx context.Context) (distribution.Namespace, storagedriver.StorageDriver, error)
	maxAge time.Duration
	fixed  bool // maxAge was set (Options.ImageIndexAge): no adaptive age
	now    func() time.Time
	log    *slog.Logger
	memo   *manifestMemo
	// counted is told of the bytes a listing writes (the referrers index
	// it rebuilds): serve's quota counter. Nil: nobody counts.
	counted func(delta int64)

	mu       sync.Mutex
	repos    map[string]indexedRepo // nil until the first build
	names    []string               // of repos, sorted; nil when it must be sorted again
	seq      uint64                 // counts the changes noted
	changed  map[string]uint64      // repository -> seq of its last change
	built    time.Time              // when the last complete build started
	took     time.Duration          // how long it took
	buildErr error                  // of the last build, shown until one succeeds
	building chan struct{}          // closed when the build under way ends; nil: none
}

// indexedRepo is one repository as listed after change seq.
type indexedRepo struct {
	repo ImageRepo
	seq  uint64
}

func newImageIndex(ctx context.Context, open func(ctx context.Context) (distribution.Namespace, storagedriver.StorageDriver, error), maxAge time.Duration, now func() time.Time, log *slog.Logger) *imageIndex {
	fixed := maxAge > 0
	if !fixed {
		maxAge = DefaultImageIndexAge
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &imageIndex{ctx: ctx, open: open, maxAge: maxAge, fixed: fixed, now: now, log: log, memo: newManifestMemo(), changed: map[string]uint64{}}
}

// changedRepo notes that repo was written: the next view lists it again.
func (x *imageIndex) changedRepo(repo string) {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.seq++
	x.changed[repo] = x.seq
	x.mu.Unlock()
}

// changedAll starts a rebuild: storage changed in ways no repository
// names (a garbage collection).
func (x *imageIndex) changedAll() {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.startBuildLocked()
	x.mu.Unlock()
}

// changedAllIfUsed is changedAll for an index that was built or is being
// built: one nobody has viewed (serve without the web UI) stays unbuilt,
// since a rebuild reads every repository; its first view builds it.
func (x *imageIndex) changedAllIfUsed() {
	if x == nil {
		return
	}
	x.mu.Lock()
	if x.repos != nil || x.building != nil {
		x.startBuildLocked()
	}
	x.mu.Unlock()
}

// imageSnapshot is what a view shows: every repository, sorted by name.
type imageSnapshot struct {
	Repos []ImageRepo
	// AsOf is when the last complete listing started; Took how long it
	// took. Repositories this server wrote since are listed anew.
	AsOf time.Time
	Took time.Duration
	// Refreshing: a rebuild is under way; the next view shows it.
	Refreshing bool
}

// view returns the index, brought up to date with this server's writes.
// It waits only for the first build (or for one after a failed build).
func (x *imageIndex) view(ctx context.Context) (*imageSnapshot, error) {
	x.mu.Lock()
	if x.repos == nil {
		done := x.startBuildLocked()
		x.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		x.mu.Lock()
		if x.repos == nil {
			err := x.buildErr
			x.mu.Unlock()
			return nil, err
		}
	}
	if x.now().Sub(x.built) > x.ageLocked() {
		done := x.startBuildLocked()
		// A large registry's rebuild (10,000 tags on a bucket: a minute
		// and more) would not land within the wait, and every view while
		// it runs would wait for nothing: then answer from the index there
		// is (the page says it is refreshing).
		if x.took <= imageIndexStaleWait {
			x.mu.Unlock()
			wait := time.NewTimer(imageIndexStaleWait)
			select {
			case <-done:
			case <-wait.C:
			case <-ctx.Done():
				wait.Stop()
				return nil, ctx.Err()
			}
			wait.Stop()
			x.mu.Lock()
		}
	}
	var stale []string
	for repo, seq := range x.changed {
		if r, ok := x.repos[repo]; !ok || r.seq < seq {
			stale = append(stale, repo)
		}
	}
	at := x.seq
	x.mu.Unlock()

	if len(stale) > 0 {
		if err := x.relist(ctx, stale, at); err != nil {
			return nil, err
		}
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	if x.names == nil {
		x.names = make([]string, 0, len(x.repos))
		for name := range x.repos {
			x.names = append(x.names, name)
		}
		slices.Sort(x.names)
	}
	snap := &imageSnapshot{Repos: make([]ImageRepo, 0, len(x.names)), AsOf: x.built, Took: x.took, Refreshing: x.building != nil}
	for _, name := range x.names {
		snap.Repos = append(snap.Repos, x.repos[name].repo)
	}
	return snap, nil
}

// ageLocked is how old the index may be before a view rebuilds it. x.mu
// is held.
func (x *imageIndex) ageLocked() time.Duration {
	if x.fixed {
		return x.maxAge
	}
	return min(x.maxAge, max(imageIndexMinAge, 10*x.took))
}

// relist lists repos again, as of change at.
func (x *imageIndex) relist(ctx context.Context, repos []string, at uint64) error {
	reg, d, err := x.open(ctx)
	if err != nil {
		return err
	}
	for _, name := range repos {
		r, exists, err := x.listOne(ctx, reg, d, name)
		if err != nil {
			return fmt.Errorf("listing images of %s: %w", name, err)
		}
		x.mu.Lock()
		if old, ok := x.repos[name]; !ok || old.seq < at {
			if exists {
				x.repos[name] = indexedRepo{repo: r, seq: at}
				if !ok {
					x.names = nil
				}
			} else {
				delete(x.repos, name)
				x.names = nil
			}
		}
		if !exists && x.changed[name] <= at {
			delete(x.changed, name) // gone: nothing to list again
		}
		x.mu.Unlock()
	}
	return nil
}

// listOne lists one repository; exists is false when storage has none of
// that name (nothing pushed, or removed).
func (x *imageIndex) listOne(ctx context.Context, reg distribution.Namespace, d storagedriver.StorageDriver, name string) (ImageRepo, bool, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return ImageRepo{}, false, nil
	}
	if _, err := d.Stat(ctx, path.Join(v2Root, "repositories", name)); err != nil {
		if isPathNotFound(err) {
			return ImageRepo{}, false, nil
		}
		return ImageRepo{}, false, err
	}
	r, err := describeRepository(ctx, reg, &referrersIndex{d: d, counted: x.counted}, named, x.memo)
	if isPathNotFound(err) {
		return ImageRepo{}, false, nil
	}
	return r, err == nil, err
}

// startBuildLocked starts a complete build unless one is under way, and
// returns the channel closed when it ends. x.mu is held.
func (x *imageIndex) startBuildLocked() chan struct{} {
	if x.building != nil {
		return x.building
	}
	done := make(chan struct{})
	x.building = done
	at, start := x.seq, x.now()
	go func() {
		defer close(done)
		// Not a request's context: the build outlives the view that
		// started it; it ends with the server.
		repos, err := x.build(x.ctx, at)
		took := x.now().Sub(start)
		x.mu.Lock()
		defer x.mu.Unlock()
		x.building = nil
		if err != nil {
			x.buildErr = err
			x.log.Warn("listing the images for the web UI failed", "err", err, "took", took)
			return
		}
		x.buildErr = nil
		x.built, x.took = start, took
		// A repository listed again after this build started stays.
		for name, old := range x.repos {
			if old.seq > at {
				repos[name] = old
			}
		}
		x.repos, x.names = repos, nil
		for name, seq := range x.changed {
			if seq <= at {
				delete(x.changed, name)
			}
		}
		x.memo.prune()
	}()
	return done
}

// build lists every repository, as of change at.
func (x *imageIndex) build(ctx context.Context, at uint64) (map[string]indexedRepo, error) {
	reg, d, err := x.open(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]indexedRepo{}
	if _, err := d.Stat(ctx, path.Join(v2Root, "repositories")); err != nil {
		if isPathNotFound(err) {
			return out, nil
		}
		return nil, fmt.Errorf("listing repositories: %w", err)
	}
	names, err := repositoryNames(ctx, reg)
	if err != nil {
		return nil, err
	}
	x.memo.startPass()
	for _, name := range names {
		r, exists, err := x.listOne(ctx, reg, d, name)
		if err != nil {
			return nil, fmt.Errorf("listing images of %s: %w", name, err)
		}
		if exists {
			out[name] = indexedRepo{repo: r, seq: at}
		}
	}
	return out, nil
}

// manifestMemo holds the manifests read, by repository and digest, so that
// a rebuild reads only new ones. Only successful reads are kept. Entries
// not used by the last complete pass are dropped after it (prune).
type manifestMemo struct {
	mu   sync.Mutex
	m    map[string]*manifestInfo
	used map[string]bool // during a pass: the keys it used
}

func newManifestMemo() *manifestMemo { return &manifestMemo{m: map[string]*manifestInfo{}} }

func (mm *manifestMemo) get(repo, dgst string) *manifestInfo {
	if mm == nil {
		return nil
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	k := repo + "@" + dgst
	mi := mm.m[k]
	if mi != nil && mm.used != nil {
		mm.used[k] = true
	}
	return mi
}

func (mm *manifestMemo) put(repo, dgst string, mi *manifestInfo) {
	if mm == nil {
		return
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	k := repo + "@" + dgst
	mm.m[k] = mi
	if mm.used != nil {
		mm.used[k] = true
	}
}

// startPass starts recording which entries a complete build uses.
func (mm *manifestMemo) startPass() {
	mm.mu.Lock()
	mm.used = map[string]bool{}
	mm.mu.Unlock()
}

// prune drops what the last pass did not use (deleted images).
func (mm *manifestMemo) prune() {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if mm.used == nil {
		return
	}
	for k := range mm.m {
		if !mm.used[k] {
			delete(mm.m, k)
		}
	}
	mm.used = nil
}

// --- paging and search ---

// imagesPerPage is how many repositories the Images page shows at once.
const imagesPerPage = 20

// maxImageSearch bounds the search text: a repository name (255) and a
// tag (128) with the colon between.
const maxImageSearch = 255 + 1 + 128

// ErrBadImageSearch is parseImageSearch's error (errors.Is).
var ErrBadImageSearch = errors.New("invalid image search")

// imageSearch is a parsed search of the Images page: REPO, or REPO:TAG,
// each part found anywhere in the name, case-insensitively ("app" finds
// "team/app-x"; ":v1" every tag with "v1" in it, in any repository).
type imageSearch struct {
	Repo, Tag string
	HasTag    bool // a ':' was given: only matching tags are shown
}

// parseImageSearch reads the search box. Empty is no search. A part may
// hold only what a repository name or tag can (letters, digits, '.', '_',
// '-', and '/' in the repository part).
func parseImageSearch(s string) (imageSearch, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxImageSearch {
		return imageSearch{}, fmt.Errorf("%w: %d characters, at most %d (REPO or REPO:TAG)", ErrBadImageSearch, len(s), maxImageSearch)
	}
	var q imageSearch
	q.Repo = s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		q.Repo, q.Tag, q.HasTag = s[:i], s[i+1:], true
	}
	for _, c := range q.Repo {
		if !isNameChar(c) && c != '/' {
			return imageSearch{}, fmt.Errorf("%w %q: a repository name holds only letters, digits, '.', '_', '-' and '/' (search REPO or REPO:TAG)", ErrBadImageSearch, s)
		}
	}
	for _, c := range q.Tag {
		if !isNameChar(c) {
			return imageSearch{}, fmt.Errorf("%w %q: a tag holds only letters, digits, '.', '_' and '-' (search REPO or REPO:TAG)", ErrBadImageSearch, s)
		}
	}
	q.Repo, q.Tag = strings.ToLower(q.Repo), strings.ToLower(q.Tag)
	return q, nil
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// imagePage is one page of the Images page.
type imagePage struct {
	Repos []ImageRepo
	// Page is 1-based; Pages at least 1.
	Page, Pages int
	// MatchedRepos and MatchedTags count what the search found (all when
	// there is none); TotalRepos and TotalTags what the registry holds.
	MatchedRepos, MatchedTags int
	TotalRepos, TotalTags     int
}

// selectImages applies q to repos (sorted by name) and returns page (1-based;
// past the end gives the last page).
func selectImages(repos []ImageRepo, q imageSearch, page, perPage int) imagePage {
	var p imagePage
	var matched []ImageRepo
	for _, r := range repos {
		p.TotalRepos++
		p.TotalTags += len(r.Tags)
		if q.Repo != "" && !strings.Contains(r.Name, q.Repo) {
			continue
		}
		if q.HasTag && q.Tag != "" {
			var tags []ImageTag
			for _, t := range r.Tags {
				if strings.Contains(strings.ToLower(t.Tag), q.Tag) {
					tags = append(tags, t)
				}
			}
			if len(tags) == 0 {
				continue
			}
			r.Tags = tags
		}
		p.MatchedTags += len(r.Tags)
		matched = append(matched, r)
	}
	p.MatchedRepos = len(matched)
	p.Pages = max(1, (len(matched)+perPage-1)/perPage)
	p.Page = min(max(page, 1), p.Pages)
	from := (p.Page - 1) * perPage
	p.Repos = matched[min(from, len(matched)):min(from+perPage, len(matched))]
	return p
}
