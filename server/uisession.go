package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Cookies of the web UI. The __Host- prefix makes the browser refuse them
// unless they are Secure, for path / and without a Domain: no other host
// or path can set or shadow them.
const (
	sessionCookie = "__Host-edgecr_session"
	loginCookie   = "__Host-edgecr_login" // double-submit CSRF token of the login form
)

// Defaults of the UI's sessions.
const (
	DefaultUIIdleTimeout = 15 * time.Minute
	uiSessionMaxAge      = 12 * time.Hour // a session ends this long after login, however busy
	uiMaxSessions        = 256
)

// uiSession is one logged-in browser. Sessions live in memory: a restart
// of edgecrd logs everyone out, which is what a device admin expects.
type uiSession struct {
	key     [32]byte // SHA-256 of the cookie value; the value itself is not kept
	csrf    string   // synchronizer token every form of this session carries
	user    string
	created time.Time
	seen    time.Time
	// created token shown once on the next GET /tokens, then dropped
	flash *tokenFlash
	// notice is a one-time message for the next page ("Client x revoked").
	notice string
}

type tokenFlash struct {
	ID       string
	Token    string
	Commands JoinCommands
	Role     Role
	Uses     int
	Expires  time.Time
}

// sessionState says why a request has no session.
type sessionState int

const (
	sessionNone    sessionState = iota // no cookie, or one this process never issued
	sessionOK                          // a live session
	sessionExpired                     // idle too long: logged out
	sessionTooOld                      // logged in longer ago than uiSessionMaxAge
)

// expiredKeep is how long an expired session is remembered, so that the
// browser that had it is told why it must log in again.
const expiredKeep = 24 * time.Hour

type sessions struct {
	mu   sync.Mutex
	m    map[[32]byte]*uiSession
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*uiSession{}, idle: idle, now: now}
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("reading random bytes: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns it with its cookie value.
// Each login gets a fresh id, so an id planted before login is worthless.
func (s *sessions) create(user string) (*uiSession, string) {
	value := randomToken()
	now := s.now()
	sess := &uiSession{key: sha256.Sum256([]byte(value)), csrf: randomToken(), user: user, created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	if len(s.m) >= uiMaxSessions {
		// Drop expired sessions first, then the least recently used.
		for k, o := range s.m {
			if s.state(o, now) != sessionOK {
				delete(s.m, k)
			}
		}
	}
	if len(s.m) >= uiMaxSessions {
		var oldest *uiSession
		for _, o := range s.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.m, oldest.key)
	}
	s.m[sess.key] = sess
	return sess, value
}

// state says whether sess is live at now.
func (s *sessions) state(sess *uiSession, now time.Time) sessionState {
	switch {
	case now.Sub(sess.created) >= uiSessionMaxAge:
		return sessionTooOld
	case now.Sub(sess.seen) >= s.idle:
		return sessionExpired
	}
	return sessionOK
}

// prune forgets sessions that expired long ago; recently expired ones stay
// (they cannot be used) so that their browser learns why it must log in.
func (s *sessions) prune(now time.Time) {
	for k, o := range s.m {
		if s.state(o, now) == sessionOK {
			continue
		}
		// A created token not shown yet goes with its session.
		o.flash, o.notice = nil, ""
		if now.Sub(o.seen) >= s.idle+expiredKeep {
			delete(s.m, k)
		}
	}
}

// lookup finds the request's session and marks it used. An expired one is
// removed and reported as such, so that the login page can say why.
func (s *sessions) lookup(r *http.Request) (*uiSession, sessionState) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, sessionNone
	}
	key := sha256.Sum256([]byte(c.Value))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now) // at most uiMaxSessions entries
	sess := s.m[key]
	if sess == nil {
		return nil, sessionNone
	}
	if st := s.state(sess, now); st != sessionOK {
		delete(s.m, key)
		return nil, st
	}
	sess.seen = now
	return sess, sessionOK
}

// end logs the session out.
func (s *sessions) end(sess *uiSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sess.key)
}

// takeFlash returns the session's created token and forgets it.
func (s *sessions) takeFlash(sess *uiSession) (*tokenFlash, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, n := sess.flash, sess.notice
	sess.flash, sess.notice = nil, ""
	return f, n
}

func (s *sessions) setFlash(sess *uiSession, f *tokenFlash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.flash = f
}

func (s *sessions) setNotice(sess *uiSession, notice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.notice = notice
}

// validCSRF compares the form's token with the expected one in constant
// time; an empty expected token never matches.
func validCSRF(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}
