package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// The repair on start: what an older edgecrd, a crash before issue 18 or
// an external tool left in the registry storage and no client must see.
// edgecrfs (durablefs.go) keeps new writes whole; this removes what was
// already broken:
//
//   - a tag directory without a current link (a first write or an untag
//     that did not finish): removed;
//   - a tag whose current link names a manifest that does not resolve in
//     its repository (revision link or content gone: a DELETE by digest
//     that died before it untagged), or whose manifest, or a child of its
//     index, references a blob that is gone or not linked into the
//     repository: removed.
//
// A broken tag is removed, not rolled back to an older digest from its
// index/ history: the tag was moved on purpose, and silently serving the
// image it was moved away from is a wrong answer a client cannot tell from
// a right one; "manifest unknown" is an honest one that a re-push fixes.
// The digest it pointed at is logged.
//
// It also puts back what a garbage collection killed mid-run left in its
// trash (gc.go, recoverTrash), so that a manifest a push re-tagged while
// the collector had it aside resolves again without waiting for the next
// collection.
//
// It runs in the background while the server serves, under the GC lock,
// and only touches a tag whose files were all last written before it
// started (before): whatever a client writes meanwhile is left alone. A
// tag is moved aside (one rename) before it is judged for good, and put
// back if a write reached it in between.

// repairRoot holds tags the repair has taken out and not yet deleted.
const repairRoot = v2Root + "/_edgecr_repair"

// Reasons a tag was removed (the metric's reason label).
const (
	repairNoCurrentLink   = "no_current_link"
	repairManifestMissing = "manifest_missing"
	repairBlobMissing     = "blob_missing"
)

// RepairOptions configure RepairStorage.
type RepairOptions struct {
	Logger *slog.Logger
	// Before: a tag with a file written at or after this time is not
	// touched (a running server's writes). Zero: now.
	Before time.Time
	// Repaired, when set, is called once per tag removed, with the reason.
	Repaired func(reason string)
	// beforeTakeOut, in tests, runs between the check of a tag and its
	// removal.
	beforeTakeOut func(repo, tag string)
}

// RepairedTag is one tag the repair removed.
type RepairedTag struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest,omitempty"` // what its current link named, if anything
	Reason     string `json:"reason"`
	Detail     string `json:"detail"`
}

// RepairReport is what a repair found and did.
type RepairReport struct {
	Repositories int           `json:"repositories"`
	TagsChecked  int           `json:"tagsChecked"`
	Removed      []RepairedTag `json:"removed"`
	Skipped      int           `json:"skipped"` // broken, but written during the repair: left alone
	GCTrashRuns  int           `json:"gcTrashRuns"`
}

// RepairStorage checks every tag of the registry storage under storageRoot
// and removes those a client could list but not pull whole. Callers
// serialise it with garbage collection (State.RepairStorage does).
func RepairStorage(ctx context.Context, storageRoot string, o RepairOptions) (*RepairReport, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Before.IsZero() {
		o.Before = time.Now()
	}
	d := openDurableFS(storageRoot)
	rep := &RepairReport{Removed: []RepairedTag{}}
	runs, err := recoverGCTrash(ctx, d, o.Logger)
	rep.GCTrashRuns = runs
	if err != nil {
		return rep, err
	}
	c := &collector{ctx: ctx, d: d, log: o.Logger, o: GCOptions{Logger: o.Logger}, rep: &GCReport{}}
	// Tags an interrupted repair took out were broken: drop them.
	if err := d.Delete(ctx, repairRoot); err != nil && !isNotFound(err) {
		return rep, fmt.Errorf("removing %s: %w", repairRoot, err)
	}
	repos, err := c.repositories()
	if err != nil {
		return rep, err
	}
	rep.Repositories = len(repos)
	id, err := randomHex(8)
	if err != nil {
		return rep, err
	}
	r := &repairer{ctx: ctx, d: d, raw: d.StorageDriver, o: o, rep: rep, aside: path.Join(repairRoot, id)}
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if err := r.repo(repo); err != nil {
			return rep, err
		}
	}
	if err := d.Delete(ctx, repairRoot); err != nil && !isNotFound(err) {
		return rep, fmt.Errorf("removing %s: %w", repairRoot, err)
	}
	return rep, nil
}

type repairer struct {
	ctx   context.Context
	d     *durableFS
	raw   storagedriver.StorageDriver // unfiltered: lists half-written tags too
	o     RepairOptions
	rep   *RepairReport
	aside string
	whole map[digest]string // per repository: manifest -> why it is not whole ("" when it is)
}

func (r *repairer) exists(p string) (bool, error) {
	_, err := r.raw.Stat(r.ctx, p)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", p, err)
	}
	return true, nil
}

func (r *repairer) repo(repo string) error {
	entries, err := r.raw.List(r.ctx, tagsDir(repo))
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing tags of %s: %w", repo, err)
	}
	r.whole = map[digest]string{}
	slices.Sort(entries)
	for _, e := range entries {
		tag := path.Base(strings.ReplaceAll(e, "\\", "/"))
		if !tagRE.MatchString(tag) {
			continue
		}
		r.rep.TagsChecked++
		bad, err := r.check(repo, tag)
		if err != nil {
			return err
		}
		if bad == nil {
			continue
		}
		if err := r.remove(bad); err != nil {
			return err
		}
	}
	return nil
}

// check returns the tag's problem, or nil when it resolves whole.
func (r *repairer) check(repo, tag string) (*RepairedTag, error) {
	b, err := r.raw.GetContent(r.ctx, tagCurrentLink(repo, tag))
	if isNotFound(err) {
		return &RepairedTag{Repository: repo, Tag: tag, Reason: repairNoCurrentLink,
			Detail: "the tag has no current link: its first write or its deletion did not finish"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tag %s:%s: %w", repo, tag, err)
	}
	d, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return &RepairedTag{Repository: repo, Tag: tag, Reason: repairManifestMissing,
			Detail: fmt.Sprintf("the current link holds no digest: %v", err)}, nil
	}
	why, err := r.manifestWhole(repo, d, 0)
	if err != nil || why == "" {
		return nil, err
	}
	reason := repairBlobMissing
	if strings.HasPrefix(why, "manifest") {
		reason = repairManifestMissing
	}
	return &RepairedTag{Repository: repo, Tag: tag, Digest: d.String(), Reason: reason, Detail: why}, nil
}

// manifestWhole says why manifest d does not pull whole from repo, or ""
// when it does.
func (r *repairer) manifestWhole(repo string, d digest, depth int) (string, error) {
	if why, ok := r.whole[d]; ok {
		return why, nil
	}
	why, err := r.manifestWhole1(repo, d, depth)
	if err == nil {
		r.whole[d] = why
	}
	return why, err
}

func (r *repairer) manifestWhole1(repo string, d digest, depth int) (string, error) {
	if ok, err := r.exists(path.Join(revisionLinkDir(repo, d), "link")); err != nil || !ok {
		return fmt.Sprintf("manifest %s is not in the repository (its revision link is gone)", d), err
	}
	data := blobDataPath(storedAs(r.ctx, r.raw, path.Join(revisionLinkDir(repo, d), "link"), d)) // sha512: stored by its sha256
	fi, err := r.raw.Stat(r.ctx, data)
	if isNotFound(err) {
		return fmt.Sprintf("manifest %s: its content is gone", d), nil
	}
	if err != nil {
		return "", fmt.Errorf("checking manifest %s: %w", d, err)
	}
	if fi.Size() > maxManifestSize || depth > 8 {
		return "", nil // not a manifest this check can follow; distribution judges it
	}
	b, err := r.raw.GetContent(r.ctx, data)
	if err != nil {
		return "", fmt.Errorf("reading manifest %s: %w", d, err)
	}
	refs, err := parseManifestRefs(b)
	if err != nil {
		return "", nil // unreadable, not missing: left to distribution and GC, which stops on it
	}
	for _, bl := range refs.blobs {
		if ok, err := r.exists(blobDataPath(storedAs(r.ctx, r.raw, path.Join(layerLinkDir(repo, bl), "link"), bl))); err != nil || !ok {
			return fmt.Sprintf("blob %s of manifest %s is gone", bl, d), err
		}
		if ok, err := r.exists(path.Join(layerLinkDir(repo, bl), "link")); err != nil || !ok {
			return fmt.Sprintf("blob %s of manifest %s is not linked into the repository", bl, d), err
		}
	}
	for _, c := range refs.manifests {
		why, err := r.manifestWhole(repo, c, depth+1)
		if err != nil || why != "" {
			return why, err
		}
	}
	return "", nil
}

// newest is the latest mtime of the files under driver path p.
func (r *repairer) newest(p string) (time.Time, error) {
	var t time.Time
	err := storagedriver.WalkFallback(r.ctx, r.raw, p, func(fi storagedriver.FileInfo) error {
		// Files only: a rename may change a directory's times.
		if !fi.IsDir() && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
		return nil
	})
	if isNotFound(err) {
		err = nil
	}
	return t, err
}

// remove takes a broken tag out: it moves the tag directory aside, checks
// that nothing wrote to it since the repair started, and deletes it; a tag
// written meanwhile goes back (or, when the tag was re-created in place,
// the aside copy is dropped).
func (r *repairer) remove(bad *RepairedTag) error {
	dir := path.Join(tagsDir(bad.Repository), bad.Tag)
	if t, err := r.newest(dir); err != nil || !t.Before(r.o.Before) {
		if err == nil {
			r.rep.Skipped++
		}
		return err
	}
	if r.o.beforeTakeOut != nil {
		r.o.beforeTakeOut(bad.Repository, bad.Tag)
	}
	aside := path.Join(r.aside, bad.Repository, bad.Tag)
	if err := r.d.Move(r.ctx, dir, aside); err != nil {
		if isNotFound(err) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("moving tag %s:%s aside: %w", bad.Repository, bad.Tag, err)
	}
	t, err := r.newest(aside)
	if err != nil {
		return err
	}
	if !t.Before(r.o.Before) {
		r.rep.Skipped++
		if ok, err := r.exists(dir); err != nil || ok {
			return errorsJoinIgnoreNil(err, r.d.Delete(r.ctx, aside))
		}
		if err := r.d.Move(r.ctx, aside, dir); err != nil {
			return fmt.Errorf("putting tag %s:%s back: %w", bad.Repository, bad.Tag, err)
		}
		return nil
	}
	if err := r.d.Delete(r.ctx, aside); err != nil && !isNotFound(err) {
		return fmt.Errorf("removing tag %s:%s: %w", bad.Repository, bad.Tag, err)
	}
	r.rep.Removed = append(r.rep.Removed, *bad)
	r.o.Logger.Warn("repair: removed a tag that could not be pulled", "repo", bad.Repository, "tag", bad.Tag,
		"digest", bad.Digest, "reason", bad.Reason, "detail", bad.Detail)
	if r.o.Repaired != nil {
		r.o.Repaired(bad.Reason)
	}
	return nil
}

// recoverGCTrash puts back what collections that died left in the trash
// and returns how many runs it found. The caller holds the GC lock.
func recoverGCTrash(ctx context.Context, d storagedriver.StorageDriver, log *slog.Logger) (int, error) {
	c := &collector{ctx: ctx, d: d, log: log, o: GCOptions{Logger: log}, rep: &GCReport{}}
	runs, err := c.list(trashRoot)
	if err != nil || len(runs) == 0 {
		return 0, err
	}
	return len(runs), c.recoverTrash()
}

func errorsJoinIgnoreNil(errs ...error) error {
	for _, err := range errs {
		if err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}
