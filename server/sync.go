package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/mirror"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
)

// SyncUser is the identity synced and pulled-through content is written
// as, in logs and the access log. It has no secret and cannot log in: the
// only way to act as it is a request made inside this process
// (internalRequest), which no network request can be.
const SyncUser = "edgecrd-sync"

// syncLock serialises sync runs per data dir, across processes (serve's
// schedule and `edgecrd sync run`), as gcLock does for collections. With
// replicas on an object store (issue 12) this is the place a lease goes.
const syncLock = ".sync.lock"

// syncStatusFile keeps the rules' last runs, for `edgecrd info`.
const syncStatusFile = "sync-status.json"

type internalKey struct{}

// internalRequest marks ctx as the server's own (sync, pull-through):
// accessControl lets it through as SyncUser with the push role.
func internalRequest(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool { v, _ := ctx.Value(internalKey{}).(bool); return v }

// syncer is the server's side of sync and pull-through: the registry as
// the mirror package writes to it, in process, through the same access
// control and storage guard as a client's push (quota, the referrers
// index and the collector's freshness apply), but with a distribution
// app that accepts an index whose children are not all present: a
// platform filter keeps the index byte for byte (so its digest, and the
// signatures made on it, stay valid) and copies only the chosen
// platforms' images; pull-through fetches each platform's image when a
// client asks for it. A client's push still gets distribution's full
// check.
type syncer struct {
	m          *mirror.Syncer
	h          http.Handler // accessControl → storageGuard → the lenient app
	log        *slog.Logger
	lock       func(context.Context) (context.Context, func(), error)
	metrics    *syncMetrics
	state      *State
	closeSpool func()     // removes a bucket replica's spool at exit
	room       *spoolRoom // bounds the spool; nil without pull-through
	// sendWindow is the send progress rule of a blob served while it is
	// fetched (progressWriter): bodyProgressWindow.
	sendWindow time.Duration // keeps the rules' status for `edgecrd info` (syncStatusFile)

	mu     sync.Mutex
	status map[string]*RuleStatus // by rule name
}

// RuleStatus is what the device knows of a rule's runs, for the Sync page,
// `edgecrd info` and the metrics.
type RuleStatus struct {
	Rule      string    `json:"rule"`
	Upstream  string    `json:"upstream"`
	Schedule  string    `json:"schedule"`
	LastRun   time.Time `json:"lastRun,omitzero"`
	NextRun   time.Time `json:"nextRun,omitzero"`
	Copied    int       `json:"copied"`
	Skipped   int       `json:"skipped"`
	Failed    int       `json:"failed"`
	Bytes     int64     `json:"bytes"`
	LastError string    `json:"lastError,omitempty"`
	Failures  []string  `json:"failures,omitempty"` // destination: reason, of the last run
}

// newSyncer builds the in-process registry path from the handlers serve
// uses (ac and guard are copied, not shared, so that only their next
// differs).
//
// runOnly: `edgecrd sync run`, which serves no pull-through and may run
// beside a serve whose spool it must leave alone.
func newSyncer(ctx context.Context, st *State, images *imageStorage, cfg *mirror.Config, rate int64, ac *accessControl, guard *storageGuard, m *metrics, log *slog.Logger, runOnly bool) (*syncer, error) {
	rc, err := registryConfigOn(images, st.Device.HTTPSecret)
	if err != nil {
		return nil, err
	}
	rc.Validation.Manifests.Indexes.Platforms = "none"
	app, err := func() (app *handlers.App, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("configuring the sync path of the registry engine: %v", r)
			}
		}()
		return handlers.NewApp(ctx, rc), nil
	}()
	if err != nil {
		return nil, err
	}
	g := *guard
	g.next = app
	a := *ac
	a.next, a.fetch, a.fetchBlob = &g, nil, nil
	s := &syncer{h: &a, log: log, status: map[string]*RuleStatus{}, sendWindow: bodyProgressWindow,
		lock: func(ctx context.Context) (context.Context, func(), error) { return syncRunLock(ctx, st, log) }, state: st}
	reg, _ := name.NewRegistry("edgecrd.internal", name.Insecure)
	dest := mirror.Destination{
		Registry: reg,
		Options:  []remote.Option{remote.WithTransport(s)},
		Has:      s.has,
	}
	s.closeSpool = func() {}
	if !runOnly && len(cfg.PullThrough) > 0 {
		// Blobs pull-throughs are fetching, on disk (not in a tmpfs): in
		// the data dir (a dot name, which backups skip), or a bucket
		// replica's own directory (syncspool.go).
		if dest.SpoolDir, s.closeSpool, err = openSpool(st, log); err != nil {
			return nil, err
		}
		room := &spoolRoom{dir: dest.SpoolDir, usage: guard.usage, space: diskSpace}
		s.room = room
		dest.Reserve = room.reserve
	}
	if s.m, err = mirror.New(cfg, dest, log); err != nil {
		return nil, err
	}
	s.m.Rate = rate
	if m != nil {
		s.metrics = newSyncMetrics(m.reg, s.m)
	}
	for _, r := range cfg.Rules {
		s.status[r.Name] = &RuleStatus{Rule: r.Name, Upstream: r.UpstreamOf().String(), Schedule: r.ScheduleOf().String()}
	}
	return s, nil
}

// RoundTrip serves a request of the mirror package in process.
func (s *syncer) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := withRouteInfo(internalRequest(r.Context()), &routeInfo{})
	r = r.Clone(ctx)
	r.RequestURI = r.URL.RequestURI()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	w := &bufferedResponse{hdr: http.Header{}}
	s.h.ServeHTTP(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.hdr, Body: io.NopCloser(&w.body), ContentLength: int64(w.body.Len()), Request: r,
	}, nil
}

// bufferedResponse holds an in-process response: the mirror package only
// writes to the device and asks what it has, so bodies are small.
type bufferedResponse struct {
	hdr    http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.hdr }
func (w *bufferedResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// has asks the registry (a HEAD, in process) whether repo has a blob or
// manifest.
func (s *syncer) has(ctx context.Context, repo string, manifest bool, d v1.Hash) (bool, error) {
	kind := "blobs"
	if manifest {
		kind = "manifests"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://edgecrd.internal/v2/"+repo+"/"+kind+"/"+d.String(), nil)
	if err != nil {
		return false, err
	}
	if manifest {
		req.Header.Set("Accept", strings.Join(manifestAccept, ", "))
	}
	resp, err := s.RoundTrip(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

var manifestAccept = []string{
	"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
}

// run runs rules now (all: none named), one run at a time per data dir
// or bucket. A scheduled run (since set: when its turn began, turnSince)
// whose rules another process or replica ran since then is skipped: the
// replicas of a bucket share one schedule's turns.
func (s *syncer) run(ctx context.Context, o mirror.RunOptions, trigger string, since time.Time) (*mirror.Report, error) {
	rctx, unlock, err := s.lock(ctx)
	if err != nil {
		if errors.Is(err, ErrSyncRunning) {
			return nil, err
		}
		return nil, fmt.Errorf("taking the sync lock: %w", err)
	}
	defer unlock()
	if !since.IsZero() && s.ranSince(o.Rules, since) {
		return nil, fmt.Errorf("%w: %s (this turn began %s)", errTurnRan, strings.Join(o.Rules, ", "), since.Format(time.RFC3339))
	}
	s.log.Info("sync started", "rules", o.Rules, "dryRun", o.DryRun, "trigger", trigger)
	rep, err := s.m.Run(rctx, o)
	if cause := context.Cause(rctx); cause != nil && ctx.Err() == nil {
		err = errors.Join(err, fmt.Errorf("sync run stopped: %w", cause))
	}
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		s.record(rep, o)
		if err := s.save(); err != nil {
			s.log.Warn("saving the sync status", "err", err)
		}
	}
	s.log.Info("sync finished", "copied", rep.Count(mirror.OutcomeCopied), "skipped", rep.Count(mirror.OutcomeSkipped),
		"failed", rep.Count(mirror.OutcomeFailed)+len(rep.Errors), "bytes", rep.BytesCopied(), "duration", rep.Finished.Sub(rep.Started))
	return rep, nil
}

// ranSince reports whether every one of rules has a run recorded in the
// shared status (any process, any replica) that finished at or after t,
// and takes those runs into this process's status.
func (s *syncer) ranSince(rules []string, t time.Time) bool {
	shared, _, err := s.state.readSyncStatus()
	if err != nil || len(rules) == 0 {
		return false
	}
	byRule := map[string]RuleStatus{}
	for _, st := range shared {
		byRule[st.Rule] = st
	}
	for _, n := range rules {
		if st, ok := byRule[n]; !ok || st.LastRun.Before(t) {
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range rules {
		if cur := s.status[n]; cur != nil {
			st := byRule[n]
			st.NextRun, st.Schedule, st.Upstream = cur.NextRun, cur.Schedule, cur.Upstream
			*cur = st
		}
	}
	return true
}

// record keeps the outcome of a run per rule, for the page, info and the
// metrics.
func (s *syncer) record(rep *mirror.Report, o mirror.RunOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ran := map[string]bool{}
	for _, r := range s.m.Config().Rules {
		if len(o.Rules) == 0 || slices.Contains(o.Rules, r.Name) {
			ran[r.Name] = true
			st := s.status[r.Name]
			st.LastRun, st.Copied, st.Skipped, st.Failed, st.Bytes, st.LastError, st.Failures = rep.Finished, 0, 0, 0, 0, "", nil
		}
	}
	for _, it := range rep.Items {
		st := s.status[it.Rule]
		if st == nil {
			continue
		}
		switch it.Outcome {
		case mirror.OutcomeCopied:
			st.Copied++
		case mirror.OutcomeSkipped:
			st.Skipped++
		case mirror.OutcomeFailed:
			st.Failed++
			st.Failures = append(st.Failures, it.Destination+": "+it.Reason)
		}
		st.Bytes += it.Bytes
		if s.metrics != nil {
			s.metrics.images.WithLabelValues(it.Rule, string(it.Outcome)).Inc()
			s.metrics.bytes.WithLabelValues(it.Rule).Add(float64(it.Bytes))
		}
	}
	for _, e := range rep.Errors {
		if st := s.status[e.Rule]; st != nil {
			st.LastError = e.Reason
		}
	}
	if s.metrics != nil {
		for n := range ran {
			st := s.status[n]
			result := "ok"
			if st.Failed > 0 || st.LastError != "" {
				result = "failed"
			}
			s.metrics.runs.WithLabelValues(n, result).Inc()
			s.metrics.lastRun.WithLabelValues(n).Set(float64(st.LastRun.Unix()))
		}
	}
}

// save writes the rules' status for `edgecrd info`, merged over what
// another process recorded for rules this one did not run.
func (s *syncer) save() error {
	prev, ver, _ := s.state.readSyncStatus()
	byRule := map[string]RuleStatus{}
	for _, st := range prev {
		byRule[st.Rule] = st
	}
	var out []RuleStatus
	for _, st := range s.Status() {
		if st.LastRun.IsZero() {
			if p, ok := byRule[st.Rule]; ok {
				p.NextRun = st.NextRun
				st = p
			}
		}
		out = append(out, st)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	// Runs are one at a time (the lock), so a conflict is an older
	// edgecrd or a hand edit: the status is advisory, write it anyway.
	_, err = s.state.put(syncStatusFile, b, ver)
	if errors.Is(err, kv.ErrConflict) {
		if _, cur, ok, _ := s.state.get(syncStatusFile); ok {
			_, err = s.state.put(syncStatusFile, b, cur)
		}
	}
	return err
}

// readSyncStatus reads the rules' status and its version ("" when none).
func (s *State) readSyncStatus() ([]RuleStatus, kv.Version, error) {
	b, ver, ok, err := s.get(syncStatusFile)
	if err != nil || !ok {
		return nil, "", err
	}
	var out []RuleStatus
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, ver, fmt.Errorf("reading the sync status %s: %w", s.where(syncStatusFile), err)
	}
	return out, ver, nil
}

// LastSync is the rules' status as the last sync run in any process left
// it (nil: never ran).
func (s *State) LastSync() ([]RuleStatus, error) {
	out, _, err := s.readSyncStatus()
	return out, err
}

// syncLeaseKey is the sync runs' lease on a bucket: one run at a time
// across replicas, as gc/lease is for garbage collection.
const syncLeaseKey = "sync/lease"

// ErrSyncRunning: another replica's sync run holds the lease on the
// bucket; a scheduled run skips its turn.
var ErrSyncRunning = errors.New("another replica is running sync")

// errTurnRan: a scheduled turn finds its rules run since it began (by
// another replica, or by `edgecrd sync run`); it is skipped.
var errTurnRan = errors.New("a run of the rule finished in this turn already")

// syncRunLock makes sync runs one at a time: a file lock in the data dir
// (waited for), or on a bucket a lease that replicas share (ErrSyncRunning
// when another holds it), renewed while the run goes on and left to
// expire when its holder dies. The run goes on under the returned
// context, which ends when the lease is lost.
func syncRunLock(ctx context.Context, st *State, log *slog.Logger) (context.Context, func(), error) {
	if st.S3() == nil {
		unlock, err := lockFile(st.Path(syncLock))
		return ctx, unlock, err
	}
	run, err := randomHex(8)
	if err != nil {
		return nil, nil, err
	}
	h, err := acquireLease(ctx, st.KV(), syncLeaseKey, ErrSyncRunning, gcHolder(), run, time.Now)
	if err != nil {
		return nil, nil, err
	}
	rctx, lost := context.WithCancelCause(ctx)
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); h.keep(kctx, lost) }()
	return rctx, func() {
		stop()
		<-done
		lost(nil)
		rctx, rc := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rc()
		if err := h.release(rctx); err != nil {
			log.Warn("releasing the sync lease", "key", syncLeaseKey, "err", err)
		}
	}, nil
}

// Status is a copy of every rule's status, in configuration order.
func (s *syncer) Status() []RuleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RuleStatus
	for _, r := range s.m.Config().Rules {
		st := *s.status[r.Name]
		st.Failures = append([]string(nil), st.Failures...)
		out = append(out, st)
	}
	return out
}

// loop runs each rule on its schedule until ctx ends. Rules are run one
// at a time (the lock); a rule whose time came during another's run runs
// right after it.
func (s *syncer) loop(ctx context.Context, now func() time.Time) {
	next := map[string]time.Time{}
	t0 := now()
	for _, r := range s.m.Config().Rules {
		if !r.ScheduleOf().Off() {
			next[r.Name] = r.ScheduleOf().Next(t0)
		}
	}
	s.setNext(next)
	for len(next) > 0 {
		var first time.Time
		for _, t := range next {
			if first.IsZero() || t.Before(first) {
				first = t
			}
		}
		timer := time.NewTimer(first.Sub(now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		var due []string
		t := now()
		for n, at := range next {
			if !at.After(t) {
				due = append(due, n)
			}
		}
		for _, n := range due {
			switch _, err := s.run(ctx, mirror.RunOptions{Rules: []string{n}}, "schedule", turnSince(s.m.Config().Rule(n).ScheduleOf(), next[n])); {
			case errors.Is(err, ErrSyncRunning) || errors.Is(err, errTurnRan):
				s.log.Info("sync skipped", "rule", n, "reason", err)
				if s.metrics != nil {
					s.metrics.runs.WithLabelValues(n, "skipped").Inc()
				}
			case err != nil:
				s.log.Error("sync run failed", "rule", n, "err", err)
			}
			next[n] = s.m.Config().Rule(n).ScheduleOf().Next(now())
		}
		s.setNext(next)
	}
}

// turnSince is when the turn of a schedule due at due began: due for
// daily@, half an interval before it for every@ (replicas started at
// different times have turns at different times; a run by any of them in
// the last half interval stands for this turn).
func turnSince(sc mirror.Schedule, due time.Time) time.Time {
	return due.Add(-sc.Interval() / 2)
}

func (s *syncer) setNext(next map[string]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, t := range next {
		s.status[n].NextRun = t
	}
}

// fetch is accessControl's pull-through hook: before a pull of a manifest
// under a pull-through prefix, bring it from the upstream unless the
// device has it. The manifest is answered as soon as it is read (the
// image is stored in the background). An error is written to w (naming
// the upstream); false: w has the answer.
func (s *syncer) fetch(w http.ResponseWriter, r *http.Request, repo, ref string) bool {
	matched, m, err := s.m.Fetch(r.Context(), repo, ref)
	if !matched {
		return true
	}
	result := "ok"
	defer func() {
		if s.metrics != nil {
			s.metrics.pullThrough.WithLabelValues(result).Inc()
		}
	}()
	if errors.Is(err, mirror.ErrNoRoom) {
		// As a push over the quota is: 403 DENIED, saying why.
		result = "failed"
		s.log.Warn("pull-through refused: no room", "repo", repo, "reference", ref, "err", err)
		writeError(w, errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("%s:%s is not on this device, and it has no room to fetch it: %v", repo, ref, err)))
		return false
	}
	if err != nil {
		result = "failed"
		s.log.Warn("pull-through failed", "repo", repo, "reference", ref, "err", err)
		writeError(w, v2.ErrorCodeManifestUnknown.WithMessage(
			fmt.Sprintf("%s:%s is not on this device, and fetching it failed: %v", repo, ref, err)))
		return false
	}
	if m == nil {
		return true // stored: served from storage
	}
	w.Header().Set("Content-Type", string(m.MediaType))
	w.Header().Set("Docker-Content-Digest", m.Digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(m.Raw)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(m.Raw)
	}
	return false
}

// fetchBlob is accessControl's hook before a blob pull: a blob a
// pull-through is fetching is served as it arrives (mirror.Syncer.Blob).
// A fetch that fails cuts the client off: the response's length then
// says it is short. false: w has the answer.
func (s *syncer) fetchBlob(w http.ResponseWriter, r *http.Request, repo, digest string) bool {
	d, err := v1.NewHash(digest)
	if err != nil {
		return true
	}
	rc, size, err := s.m.Blob(r.Context(), repo, d)
	if err != nil {
		s.log.Warn("pull-through blob refused: no room", "repo", repo, "digest", digest, "err", err)
		writeError(w, errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("blob %s of %s is not on this device, and it has no room to fetch it: %v", digest, repo, err)))
		return false
	}
	if rc == nil {
		return true
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Accept-Ranges", "bytes")
	// A Range (containerd resumes a cut download with "bytes=N-") is
	// answered as from storage (http.ServeContent): 206 with the bytes
	// asked for, each sent once it arrived, as to any follower.
	start, length, status := int64(0), size, http.StatusOK
	switch first, last, ok := singleRange(r.Header.Get("Range"), size); {
	case !ok: // none, or one this does not serve: the whole blob (RFC 9110 14.2)
	case first < 0:
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		http.Error(w, "requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return false
	default:
		start, length, status = first, last-first+1, http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if r.Method != http.MethodGet {
		return false
	}
	if start > 0 {
		if _, err := rc.Seek(start, io.SeekStart); err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	body := io.LimitReader(rc, length)
	// Each piece goes out as it arrives (a response buffers otherwise),
	// under the send progress rule: a client that stops reading is cut
	// within sendWindow of its socket's buffers filling up, and its
	// reader lets go of the spool file.
	ctl := http.NewResponseController(w)
	sw := &progressWriter{w: w, rc: ctl, window: s.sendWindow}
	defer sw.end()
	buf := make([]byte, 64<<10)
	err = nil
	for err == nil {
		var n int
		n, err = body.Read(buf)
		if n > 0 {
			if werr := sw.send(buf[:n]); werr != nil {
				err = werr
			}
		}
	}
	if err != io.EOF {
		if errors.Is(err, errClientTooSlow) {
			s.log.Warn("pull-through blob: the client stopped reading, cut", "repo", repo, "digest", digest, "err", err)
		} else if r.Context().Err() == nil {
			s.log.Warn("pull-through blob failed mid-transfer", "repo", repo, "digest", digest, "err", err)
		}
		panic(http.ErrAbortHandler) // closes the connection: never a short blob that looks whole
	}
	return false
}

// singleRange parses a Range header of one byte range ("bytes=a-b",
// "bytes=a-", "bytes=-n") of a blob of size bytes: ok false when there is
// none or it is not one such range (several, another unit: the whole
// blob is sent, as a server may); first -1 when it cannot be satisfied.
func singleRange(v string, size int64) (first, last int64, ok bool) {
	spec, found := strings.CutPrefix(v, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if a == "" { // the last b bytes
		n, good := num(b)
		if !good {
			return 0, 0, false
		}
		if n == 0 || size == 0 {
			return -1, 0, true
		}
		return max(size-n, 0), size - 1, true
	}
	first, good := num(a)
	if !good {
		return 0, 0, false
	}
	last = size - 1
	if b != "" {
		if last, good = num(b); !good || last < first {
			return 0, 0, false
		}
		last = min(last, size-1)
	}
	if first >= size {
		return -1, 0, true
	}
	return first, last, true
}

// syncMetrics are the edgecr_sync_* series.
type syncMetrics struct {
	runs        *prometheus.CounterVec
	images      *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	lastRun     *prometheus.GaugeVec
	pullThrough *prometheus.CounterVec
}

func newSyncMetrics(reg *prometheus.Registry, m *mirror.Syncer) *syncMetrics {
	sm := &syncMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_sync_runs_total", Help: "Sync rule runs, by rule and result (ok: nothing failed; skipped: another replica ran it).",
		}, []string{"rule", "result"}),
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_sync_images_total", Help: "Images sync runs handled, by rule and outcome (copied, skipped, failed).",
		}, []string{"rule", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_sync_copied_bytes_total", Help: "Blob bytes sync runs copied from upstreams, by rule.",
		}, []string{"rule"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgecr_sync_last_run_timestamp_seconds", Help: "When a rule's last run finished (Unix time).",
		}, []string{"rule"}),
		pullThrough: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_sync_pullthrough_total", Help: "Manifest pulls under a pull-through prefix the device did not have, by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(sm.runs, sm.images, sm.bytes, sm.lastRun, sm.pullThrough)
	for _, u := range m.Config().Upstreams {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecr_sync_upstream_requests_total", Help: "HTTP requests sent to an upstream (sync and pull-through).",
			ConstLabels: prometheus.Labels{"upstream": u.Name},
		}, func() float64 { return float64(m.UpstreamRequests(u.Name)) }))
	}
	return sm
}

// ErrNoSync: the server runs without a sync configuration.
var ErrNoSync = errors.New("no sync configuration (give serve --sync-config FILE)")

// Sync runs sync rules now (every rule when none is named).
func (s *Server) Sync(ctx context.Context, o mirror.RunOptions) (*mirror.Report, error) {
	if s.sync == nil {
		return nil, ErrNoSync
	}
	return s.sync.run(ctx, o, "command", time.Time{})
}

// SyncStatus is every rule's last and next run; nil without a sync
// configuration.
func (s *Server) SyncStatus() []RuleStatus {
	if s.sync == nil {
		return nil
	}
	return s.sync.Status()
}

// SyncUpstreamRequests is how many requests went to the named upstream.
func (s *Server) SyncUpstreamRequests(upstream string) int64 {
	if s.sync == nil {
		return 0
	}
	return s.sync.m.UpstreamRequests(upstream)
}

// RunSync runs sync rules once on the data dir of st, outside serve
// (`edgecrd sync run`): the same in-process path as serve's, so quota and
// the referrers index apply; runs are serialised with serve's by the sync
// lock.
func RunSync(ctx context.Context, st *State, cfg *mirror.Config, rate int64, o mirror.RunOptions, log *slog.Logger) (*mirror.Report, error) {
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0", Logger: log, Sync: cfg, SyncRate: rate, syncRunOnly: true})
	if err != nil {
		return nil, err
	}
	defer srv.ln.Close()
	return srv.Sync(ctx, o)
}
