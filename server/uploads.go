package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"
)

// Defaults of the upload session bounds (Options.UploadsPerIdentity,
// UploadsTotal, UploadIdle). A docker push opens one session per layer it
// uploads at a time (five by default), crane four; an empty session holds
// about 24 KiB of disk in six inodes.
const (
	DefaultUploadsPerIdentity = 50
	DefaultUploadsTotal       = 500
	DefaultUploadIdle         = 15 * time.Minute
)

// uploadSessions tracks the registry's open upload sessions: who opened
// each, when a request last used it, and whether one is using it now. It
// is what serializes the requests of one session (a PATCH still writing
// while a DELETE removes its file would make the quota's counter subtract
// the same bytes twice), what bounds how many sessions an identity and
// everyone together may hold open, and what expires idle ones.
type uploadSessions struct {
	perIdentity, total int
	idle               time.Duration
	now                func() time.Time

	mu      sync.Mutex
	open    map[string]*uploadSession // by driver path of the session dir
	owned   map[string]int            // open sessions per identity
	pending int                       // POSTs admitted, not yet answered
}

type uploadSession struct {
	dir   string // driver path
	owner string // "" for sessions found on disk at start
	last  time.Time
	busy  bool
}

func newUploadSessions(perIdentity, total int, idle time.Duration, now func() time.Time) *uploadSessions {
	return &uploadSessions{perIdentity: perIdentity, total: total, idle: idle, now: now,
		open: map[string]*uploadSession{}, owned: map[string]int{}}
}

// errTooManyUploads is the refusal of a new session past a bound.
var errTooManyUploads = errors.New("too many open upload sessions")

// admit sets a place aside for a new session of owner, or says which
// bound it would cross. The place is either bound to the session the
// registry created (opened) or given back (abandon).
func (s *uploadSessions) admit(owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.owned[owner]; n >= s.perIdentity {
		return fmt.Errorf("%w: %s has %d open (limit %d); finish or cancel (DELETE) some, idle ones expire after %s",
			errTooManyUploads, owner, n, s.perIdentity, s.idle)
	}
	if n := len(s.open) + s.pending; n >= s.total {
		return fmt.Errorf("%w: the registry has %d open (limit %d); retry later, idle ones expire after %s",
			errTooManyUploads, n, s.total, s.idle)
	}
	s.owned[owner]++
	s.pending++
	return nil
}

func (s *uploadSessions) abandon(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	s.drop(owner)
}

func (s *uploadSessions) drop(owner string) {
	if s.owned[owner]--; s.owned[owner] <= 0 {
		delete(s.owned, owner)
	}
}

// opened binds an admitted place to the session the registry created.
func (s *uploadSessions) opened(owner, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	if _, ok := s.open[dir]; ok {
		s.drop(owner)
		return
	}
	s.open[dir] = &uploadSession{dir: dir, owner: owner, last: s.now()}
}

// found records a session that was on disk before this process started.
func (s *uploadSessions) found(dir string, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[dir]; !ok {
		s.open[dir] = &uploadSession{dir: dir, last: last}
		s.owned[""]++
	}
}

// acquire gives the caller the session at dir to itself until release, or
// reports false when another request has it. A session this process does
// not know (an id nobody opened) is held too: the registry answers for it.
// exists tells release whether the session is still there afterwards.
func (s *uploadSessions) acquire(dir string) (release func(exists bool), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.open[dir]
	if sess == nil {
		sess = &uploadSession{dir: dir}
		s.open[dir] = sess
		s.owned[""]++
	} else if sess.busy {
		return nil, false
	}
	sess.busy = true
	return func(exists bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sess.busy = false
		sess.last = s.now()
		if !exists {
			s.forget(sess)
		}
	}, true
}

func (s *uploadSessions) forget(sess *uploadSession) {
	if s.open[sess.dir] == sess {
		delete(s.open, sess.dir)
		s.drop(sess.owner)
	}
}

// expired takes the sessions idle for longer than the idle time: they are
// the caller's, as if acquired (a request for one meanwhile gets 409),
// until it calls removed.
func (s *uploadSessions) expired() []*uploadSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.now().Add(-s.idle)
	var out []*uploadSession
	for _, sess := range s.open {
		if !sess.busy && sess.last.Before(limit) {
			sess.busy = true
			out = append(out, sess)
		}
	}
	return out
}

// removed forgets an expired session once its files are gone.
func (s *uploadSessions) removed(sess *uploadSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget(sess)
}

// count is the number of open sessions and those of owner.
func (s *uploadSessions) count(owner string) (total, owned int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open), s.owned[owner]
}

// scanUploads finds the upload sessions under the storage root: every
// directory in a repository's _uploads, with the newest modification time
// of the session, its data and its start marker.
func scanUploads(root string, each func(dir string, last time.Time)) {
	repos := osPath(root, path.Join(v2Root, "repositories"))
	_ = filepath.WalkDir(repos, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		switch e.Name() {
		case "_layers", "_manifests":
			return filepath.SkipDir
		case "_uploads":
			ids, _ := os.ReadDir(p)
			for _, id := range ids {
				if !id.IsDir() || !uploadIDRE.MatchString(id.Name()) {
					continue
				}
				var last time.Time
				for _, f := range []string{"", "data", "startedat"} {
					if fi, err := os.Stat(filepath.Join(p, id.Name(), f)); err == nil && fi.ModTime().After(last) {
						last = fi.ModTime()
					}
				}
				rel, err := filepath.Rel(root, filepath.Join(p, id.Name()))
				if err != nil {
					continue
				}
				each("/"+filepath.ToSlash(rel), last)
			}
			return filepath.SkipDir
		}
		return nil
	})
}

// uploadLoop removes idle upload sessions, at start (sessions a previous
// run left) and then every few minutes.
func (s *Server) uploadLoop(ctx context.Context) {
	every := min(s.opts.UploadIdle/4, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.expireUploads()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expireUploads removes the sessions idle for longer than UploadIdle,
// with their data, and takes what they held off the usage counter.
func (s *Server) expireUploads() {
	ctx := context.Background()
	for _, sess := range s.sessions.expired() {
		before := s.images.size(ctx, sess.dir)
		if err := s.images.removeAll(ctx, sess.dir); err != nil {
			s.log.Error("removing idle upload session", "upload", sess.dir, "err", err)
		}
		freed := before - s.images.size(ctx, sess.dir)
		s.usage.add(-freed)
		s.sessions.removed(sess)
		s.log.Info("idle upload session removed", "upload", path.Base(sess.dir), "user", sess.owner,
			"idleSince", sess.last, "freedBytes", freed)
	}
}
