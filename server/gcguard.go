package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/gorilla/mux"
)

// freshness is the server's half of online garbage collection: before the
// registry tells a client that content exists, or links existing content
// into a new manifest, the content's files get a current mtime. The
// collector sweeps only what is older than its grace period, so content a
// push is about to reference is never swept under it (gc.go).
//
// A file is touched only when its mtime is older than every, so a busy pull
// costs a stat, not a write, per blob; the grace period must be well above
// every (the default grace is an hour, every a minute).
//
// On a bucket (st not local) there are no mtimes to refresh: a use is
// recorded in the shared state instead, once per digest and interval, and
// waits while a collector is deciding on that digest (gcshared.go).
type freshness struct {
	root  string // filesystem root of the registry storage (local disk)
	st    *imageStorage
	uses  *sharedUse // on a bucket: use records; nil on local disk
	every time.Duration
	now   func() time.Time
}

// storage is where the content is; tests give only root.
func (f *freshness) storage() *imageStorage {
	if f.st == nil {
		return &imageStorage{root: f.root}
	}
	return f.st
}

// use records, on a bucket, a use of d (and waits while a collector
// decides on it); on local disk the touches do that. An error means the
// use could not be recorded: the request must not go on.
func (f *freshness) use(ctx context.Context, d digest) error {
	if f.uses == nil {
		return nil
	}
	return f.uses.use(ctx, digestKey(d))
}

// touch refreshes the file at driver path p and reports whether it exists.
// On a bucket it does nothing: uses are recorded by digest (use).
func (f *freshness) touch(p string) bool {
	if f.uses != nil {
		return true
	}
	full := osPath(f.root, p)
	fi, err := os.Stat(full)
	if err != nil {
		return false
	}
	now := f.now()
	if now.Sub(fi.ModTime()) >= f.every {
		if err := os.Chtimes(full, time.Time{}, now); err != nil {
			return false // gone meanwhile: the collector took it
		}
	}
	return true
}

// blob refreshes a blob and repo's link to it.
func (f *freshness) blob(repo string, d digest) {
	f.blobCtx(context.Background(), repo, d)
}

// blobCtx is blob, with the error of recording the use on a bucket.
func (f *freshness) blobCtx(ctx context.Context, repo string, d digest) error {
	if err := f.use(ctx, d); err != nil {
		return err
	}
	f.touch(blobDataPath(d))
	if repo != "" {
		f.touch(path.Join(layerLinkDir(repo, d), "link"))
	}
	if cd := f.canonicalBlob(repo, d); cd != "" { // a sha512 blob is stored by its sha256 (sha512.go)
		return f.blobCtx(ctx, repo, cd)
	}
	return nil
}

// manifest refreshes a manifest's content and repo's revision link.
func (f *freshness) manifest(repo string, d digest) {
	f.manifestCtx(context.Background(), repo, d)
}

// manifestCtx is manifest, with the error of recording the use on a bucket.
func (f *freshness) manifestCtx(ctx context.Context, repo string, d digest) error {
	if err := f.use(ctx, d); err != nil {
		return err
	}
	f.touch(blobDataPath(d))
	f.touch(path.Join(revisionLinkDir(repo, d), "link"))
	if cd := f.canonicalManifest(repo, d); cd != "" { // a sha512 manifest is stored by its sha256 (sha512.go)
		return f.manifestCtx(ctx, repo, cd)
	}
	return nil
}

// manifestTree refreshes everything a manifest being pushed references:
// its blobs and, for an index, each child manifest with everything that
// child references, read from storage.
func (f *freshness) manifestTree(ctx context.Context, repo string, refs manifestRefs) error {
	seen := map[digest]bool{}
	var walk func(r manifestRefs) error
	walk = func(r manifestRefs) error {
		for _, b := range r.blobs {
			if err := f.blobCtx(ctx, repo, b); err != nil {
				return err
			}
		}
		for _, c := range r.manifests {
			if seen[c] || len(seen) >= 10000 {
				continue
			}
			seen[c] = true
			if err := f.manifestCtx(ctx, repo, c); err != nil {
				return err
			}
			p := blobDataPath(c)
			if cd := f.canonicalManifest(repo, c); cd != "" { // a sha512 child is stored by its sha256
				p = blobDataPath(cd)
			}
			b, err := f.storage().readFile(ctx, p, maxManifestSize)
			if err != nil {
				continue
			}
			if cr, err := parseManifestRefs(b); err == nil {
				if err := walk(cr); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(refs)
}

// tagRE is the OCI tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// storageGuard sits between access control and distribution: it keeps
// content fresh for the collector and enforces the storage quota.
type storageGuard struct {
	fresh    *freshness
	usage    *usage
	sessions *uploadSessions
	router   *mux.Router
	metrics  *metrics
	log      *slog.Logger
	next     http.Handler
	health   *storeHealth // on a bucket; nil on local disk

	referrers *referrersIndex // manifests with a subject are indexed here (referrersindex.go)
	index     *imageIndex     // told of every manifest written or deleted (imageindex.go)
	// serveFiles: blob GETs and HEADs on local disk are answered from the
	// file (blobserve.go), not through distribution's reader.
	serveFiles bool
	// blobDriver: on a bucket, blob GETs and HEADs are answered from this
	// driver's Reader (blobserve.go); nil on local disk.
	blobDriver storagedriver.StorageDriver
}

func (g *storageGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := routeInfoFrom(r.Context()).route
	switch route {
	case v2.RouteNameBlob, v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk, v2.RouteNameManifest:
	default:
		g.next.ServeHTTP(w, r)
		return
	}
	var m mux.RouteMatch
	if !g.router.Match(r, &m) {
		g.next.ServeHTTP(w, r)
		return
	}
	repo := m.Vars["name"]
	if want := sha512Target(route, r.Method, m.Vars, r.URL.Query().Get); want != "" && g.referrers != nil {
		sw := &sha512Writer{ResponseWriter: w, want: want} // sha512.go
		if route == v2.RouteNameBlobUpload {
			sw.onCreated = func() error { return g.linkSha512(r.Context(), repo, r.URL.Query().Get("from"), want) }
		}
		w = sw
	}
	switch route {
	case v2.RouteNameBlob:
		if d, err := parseDigest(m.Vars["digest"]); err == nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if err := g.fresh.blobCtx(r.Context(), repo, d); err != nil {
				g.unavailable(w, r, err)
				return
			}
			if g.serveFiles && serveBlobFile(w, r, g.fresh.root, repo, d) { // blobserve.go
				return
			}
			if serveBlobStored(w, r, g.blobDriver, repo, d) {
				return
			}
		}
	case v2.RouteNameBlobUpload:
		if r.Method == http.MethodPost {
			g.startUpload(w, r, repo)
			return
		}
	case v2.RouteNameBlobUploadChunk:
		uuid := m.Vars["uuid"]
		if !uploadIDRE.MatchString(uuid) {
			break
		}
		if r.Method != http.MethodPatch && r.Method != http.MethodPut && r.Method != http.MethodDelete {
			break
		}
		if r.Method == http.MethodPatch {
			if err := checkContentRange(r.Header.Get("Content-Range")); err != nil {
				writeError(w, errcode.ErrorCodeRangeInvalid.WithMessage(err.Error()))
				return
			}
		}
		// One request at a time per session: the before/after sizes the
		// counter takes are only right when nothing else changes the
		// session meanwhile.
		dir := path.Join(uploadsDir(repo), uuid)
		release, ok := g.sessions.acquire(dir)
		if !ok {
			writeErrorStatus(w, http.StatusConflict, errcode.ErrorCodeBlobUploadInvalid.WithMessage(
				fmt.Sprintf("upload %s is in use by another request: one request at a time per upload session", uuid)))
			return
		}
		defer func() { release(g.exists(dir)) }()
		if r.Method == http.MethodDelete {
			before := g.sizes(dir)
			sw := &statusWriter{ResponseWriter: w}
			g.next.ServeHTTP(sw, r)
			if sw.status/100 == 2 {
				// Distribution's cancel leaves the session's hash state
				// behind (three inodes that nothing uses again).
				g.cancelUpload(repo, uuid)
			}
			g.usage.add(g.sizes(dir) - before)
			return
		}
		g.upload(w, r, repo, uuid)
		return
	case v2.RouteNameManifest:
		if r.Method == http.MethodPut || r.Method == http.MethodDelete {
			// Once the write is done, before the answer leaves (it is
			// sent when the handler returns): a view that follows it
			// lists the repository again.
			defer g.index.changedRepo(repo)
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if d, err := parseDigest(m.Vars["reference"]); err == nil {
				if err := g.fresh.manifestCtx(r.Context(), repo, d); err != nil {
					g.unavailable(w, r, err)
					return
				}
			}
		case http.MethodPut:
			g.putManifest(w, r, repo, m.Vars["reference"])
			return
		case http.MethodDelete:
			if g.deleteSha512Manifest(w, r, repo, m.Vars["reference"]) { // sha512.go
				return
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

// refuse answers an upload that does not fit the quota: 403 DENIED, a
// policy refusal that no retry or smaller chunk will change.
func (g *storageGuard) refuse(w http.ResponseWriter, r *http.Request, msg string) {
	g.metrics.quotaRejections.Inc()
	i := routeInfoFrom(r.Context())
	g.log.Warn("upload refused: storage quota full", "user", i.user, "repo", i.repo, "route", i.route,
		"usedBytes", g.usage.used(), "quotaBytes", g.usage.quota)
	writeError(w, errcode.ErrorCodeDenied.WithMessage(msg))
}

// unavailable answers a request whose use could not be recorded for the
// collector on a bucket (gcshared.go): 503, the store is the cause.
func (g *storageGuard) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	g.log.Warn("request refused: recording the use of content for garbage collection failed", "route", routeInfoFrom(r.Context()).route, "err", err)
	if errors.Is(err, errGCDeciding) {
		writeErrorStatus(w, http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(err.Error()+"; retry"))
		return
	}
	g.health.observe(r.Context(), err)
	writeStoreDown(w, "object store unavailable: "+storeReason(err))
}

// exists reports whether anything is at the driver path p.
func (g *storageGuard) exists(p string) bool {
	return g.fresh.storage().exists(context.Background(), p)
}

// sizes sums the regular files at the driver paths (directories walked).
func (g *storageGuard) sizes(paths ...string) int64 {
	return g.fresh.storage().size(context.Background(), paths...)
}

// startUpload handles POST /v2/<name>/blobs/uploads/: a new session, or
// a cross-repository mount of an existing blob.
func (g *storageGuard) startUpload(w http.ResponseWriter, r *http.Request, repo string) {
	var touched []string
	if d, err := parseDigest(r.URL.Query().Get("mount")); err == nil {
		if err := g.fresh.blobCtx(r.Context(), repo, d); err != nil {
			g.unavailable(w, r, err)
			return
		}
		if from := r.URL.Query().Get("from"); from != "" && validRepoName(from) == nil {
			g.fresh.blob(from, d)
		}
		touched = append(touched, path.Join(layerLinkDir(repo, d), "link"))
	}
	// Distribution does not store a POST body, but a client that sends one
	// hears about the quota before anything else happens.
	if r.ContentLength > 0 && g.usage.quota > 0 {
		acct := &uploadAccount{u: g.usage}
		if !acct.reserve(r.ContentLength) {
			g.refuse(w, r, g.usage.quotaError(r.ContentLength, 0, false))
			return
		}
		acct.done()
	}
	// A mount that finds its blob opens no session, but one that does
	// not falls back to a new session: both are admitted alike.
	owner := routeInfoFrom(r.Context()).user
	if err := g.sessions.admit(owner); err != nil {
		g.log.Warn("upload refused: too many open sessions", "user", owner, "repo", repo, "err", err)
		w.Header().Set("Retry-After", "60")
		writeError(w, errcode.ErrorCodeTooManyRequests.WithMessage(err.Error()))
		return
	}
	before := g.sizes(touched...)
	g.next.ServeHTTP(w, r)
	if id := w.Header().Get("Docker-Upload-UUID"); uploadIDRE.MatchString(id) && w.Header().Get("Location") != "" &&
		g.exists(path.Join(uploadsDir(repo), id)) {
		touched = append(touched, path.Join(uploadsDir(repo), id))
		g.sessions.opened(owner, path.Join(uploadsDir(repo), id))
	} else {
		g.sessions.abandon(owner)
	}
	g.usage.add(g.sizes(touched...) - before)
}

// checkContentRange accepts what a chunk's Content-Range may be,
// "<start>-<end>" with start <= end, or nothing; distribution answers
// anything else with a 500.
func checkContentRange(cr string) error {
	if cr == "" {
		return nil
	}
	a, b, ok := strings.Cut(cr, "-")
	start, err1 := parseRangeNumber(a)
	end, err2 := parseRangeNumber(b)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("invalid Content-Range %q: want <start>-<end>, two byte offsets", cr)
	}
	if start > end {
		return fmt.Errorf("invalid Content-Range %q: start %d is after end %d", cr, start, end)
	}
	return nil
}

// parseRangeNumber reads a byte offset: decimal digits only (no sign, no
// spaces), within int64.
func parseRangeNumber(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("invalid byte offset %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// upload handles PATCH and PUT of an upload session: the body is counted
// against the quota (up front by Content-Length when given, as it streams
// otherwise), and a session that does not fit is cancelled with its data.
// What the request changes on disk besides the body (hash states, the
// commit's move, the link) is measured before and after. A session whose
// body was lost midway (the client went away, or stalled past the
// server's timeout) goes too: distribution saved no hash state for the
// bytes it wrote, so no request can continue it (416 at any offset), and
// a push given up that way (a client cancels its other layers' uploads
// when one is refused) must not hold its identity's places until the
// sessions expire.
func (g *storageGuard) upload(w http.ResponseWriter, r *http.Request, repo, uuid string) {
	dir := path.Join(uploadsDir(repo), uuid)
	touched := []string{dir}
	if r.Method == http.MethodPut {
		if d, err := parseDigest(r.URL.Query().Get("digest")); err == nil {
			// The commit keeps an existing blob instead of the upload:
			// that blob must not be swept before the manifest comes.
			if err := g.fresh.blobCtx(r.Context(), repo, d); err != nil {
				g.unavailable(w, r, err)
				return
			}
			touched = append(touched, blobDataPath(d), path.Join(layerLinkDir(repo, d), "link"))
		}
		g.fresh.touch(path.Join(dir, "data"))
	}
	before := g.sizes(touched...)
	acct := &uploadAccount{u: g.usage}
	defer func() {
		acct.done()
		// Body bytes were counted as they came. On a bucket they are not
		// seen until the commit makes them a blob (a multipart upload in
		// progress is no object): the counter keeps them, and counts the
		// blob again when the commit makes it appear. That errs high
		// until the next walk, and must: the other replicas learn of the
		// blob only through this count (quotashared.go), and a walk that
		// ran while it was a multipart upload did not see it.
		read := acct.read
		if !g.fresh.storage().local() {
			read = 0
		}
		g.usage.add(g.sizes(touched...) - before - read)
	}()
	if r.ContentLength > 0 && !acct.reserve(r.ContentLength) {
		msg := g.usage.quotaError(r.ContentLength, g.sizes(dir), false)
		g.cancelUpload(repo, uuid)
		g.refuse(w, r, msg)
		return
	}
	var body *quotaReader
	if r.Body != nil && r.Body != http.NoBody {
		body = &quotaReader{body: r.Body, acct: acct}
		r.Body = body
	}
	qw := &quotaWriter{ResponseWriter: w, g: g, r: r, acct: acct, session: dir}
	g.next.ServeHTTP(qw, r)
	switch {
	case acct.exceeded:
		g.cancelUpload(repo, uuid)
	case body != nil && body.err != nil:
		g.log.Info("upload session removed: its body was cut", "repo", repo, "upload", uuid, "bytes", acct.read, "err", body.err)
		g.cancelUpload(repo, uuid)
	}
}

// cancelUpload removes an upload session and its data: nothing of a
// refused upload is kept.
func (g *storageGuard) cancelUpload(repo, uuid string) {
	if err := g.fresh.storage().removeAll(context.Background(), path.Join(uploadsDir(repo), uuid)); err != nil {
		g.log.Error("removing refused upload", "repo", repo, "upload", uuid, "err", err)
	}
}

// quotaWriter replaces distribution's answer to an upload whose body was
// cut at the quota (an "unknown error" reading the payload) with the quota
// refusal.
type quotaWriter struct {
	http.ResponseWriter
	g        *storageGuard
	r        *http.Request
	acct     *uploadAccount
	session  string // the upload's driver path
	status   int
	replaced bool
}

func (q *quotaWriter) WriteHeader(code int) {
	if q.status != 0 {
		return
	}
	if q.acct.exceeded {
		h := q.Header()
		for _, k := range []string{"Location", "Range", "Docker-Upload-UUID", "Content-Length"} {
			h.Del(k)
		}
		q.replaced = true
		q.status = http.StatusForbidden
		q.g.refuse(q.ResponseWriter, q.r, q.g.usage.quotaError(q.acct.read, q.g.sizes(q.session), true))
		return
	}
	q.status = code
	q.ResponseWriter.WriteHeader(code)
}

func (q *quotaWriter) Write(p []byte) (int, error) {
	if q.status == 0 {
		q.WriteHeader(http.StatusOK)
	}
	if q.replaced {
		return len(p), nil
	}
	return q.ResponseWriter.Write(p)
}

func (q *quotaWriter) Unwrap() http.ResponseWriter { return q.ResponseWriter }

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// putManifest reads the manifest (bounded), checks it against the quota,
// refreshes what it references and hands it to distribution.
func (g *storageGuard) putManifest(w http.ResponseWriter, r *http.Request, repo, reference string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, errcode.ErrorCodeManifestInvalid.WithMessage(fmt.Sprintf("reading manifest: %v", err)))
		return
	}
	if len(body) > maxManifestSize {
		writeErrorStatus(w, http.StatusRequestEntityTooLarge, errcode.ErrorCodeManifestInvalid.WithMessage(
			fmt.Sprintf("manifest exceeds the %d byte limit", maxManifestSize)))
		return
	}
	acct := &uploadAccount{u: g.usage}
	defer acct.done()
	n := int64(len(body))
	if !acct.reserve(n) {
		g.refuse(w, r, g.usage.quotaError(n, 0, false))
		return
	}
	var ok bool
	if w, ok = g.indexReferrer(w, r, repo, reference, body); !ok {
		return
	}
	if w, ok = g.sha512Manifest(w, r, repo, reference, body); !ok { // sha512.go
		return
	}
	sum := sha256.Sum256(body)
	d := digest("sha256:" + hex.EncodeToString(sum[:]))
	if err := g.fresh.manifestCtx(r.Context(), repo, d); err != nil {
		g.unavailable(w, r, err)
		return
	}
	if refs, err := parseManifestRefs(body); err == nil {
		if err := g.fresh.manifestTree(r.Context(), repo, refs); err != nil {
			g.unavailable(w, r, err)
			return
		}
	}
	touched := []string{blobDataPath(d), revisionLinkDir(repo, d)}
	if tagRE.MatchString(reference) {
		touched = append(touched, path.Join(tagsDir(repo), reference))
	}
	before := g.sizes(touched...)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = n
	sw := &statusWriter{ResponseWriter: w}
	g.next.ServeHTTP(sw, r)
	if sw.status/100 == 2 {
		g.usage.add(g.sizes(touched...) - before)
	}
}
