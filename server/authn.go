package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Authentication failures. They are reported to clients as 401 and counted
// in metrics by kind; the message never holds the secret.
var (
	ErrUnknownUser = errors.New("unknown user")
	ErrBadSecret   = errors.New("wrong password")
	ErrRevoked     = errors.New("credential revoked")
)

// Authenticator verifies credentials against identities.json. It keeps a
// parsed copy in memory and compares the file's identity (inode, size,
// mtime) on every call, so a revocation written by another process applies
// to the very next request at the cost of one stat.
type Authenticator struct {
	store *IdentityStore
	mu    sync.Mutex // serialises reloads
	snap  atomic.Pointer[authSnapshot]
}

type authSnapshot struct {
	info os.FileInfo
	ids  map[string]authEntry
}

type authEntry struct {
	hash    [32]byte
	role    Role
	revoked bool
}

// NewAuthenticator loads the store once and fails when it is unreadable.
func NewAuthenticator(store *IdentityStore) (*Authenticator, error) {
	a := &Authenticator{store: store}
	if _, err := a.current(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Authenticator) current() (*authSnapshot, error) {
	info, err := os.Stat(a.store.path)
	if err != nil {
		return nil, fmt.Errorf("checking identities: %w", err)
	}
	if s := a.snap.Load(); s != nil && sameFile(s.info, info) {
		return s, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.snap.Load(); s != nil && sameFile(s.info, info) {
		return s, nil
	}
	// Stat before reading: if a writer replaces the file in between, the
	// next call sees a different file and reloads again.
	info, err = os.Stat(a.store.path)
	if err != nil {
		return nil, fmt.Errorf("checking identities: %w", err)
	}
	recs, err := a.store.Read()
	if err != nil {
		return nil, err
	}
	s := &authSnapshot{info: info, ids: make(map[string]authEntry, len(recs.Identities))}
	for _, i := range recs.Identities {
		h, _ := decodeHash(i.SecretHash) // validated by Read
		s.ids[i.ID] = authEntry{hash: h, role: i.Role, revoked: i.Revoked != nil}
	}
	a.snap.Store(s)
	return s, nil
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// Verify checks user and secret and returns the identity's role.
func (a *Authenticator) Verify(user, secret string) (Role, error) {
	s, err := a.current()
	if err != nil {
		return "", err
	}
	e, ok := s.ids[user]
	sum := sha256.Sum256([]byte(secret))
	if !ok {
		return "", ErrUnknownUser
	}
	if subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		return "", ErrBadSecret
	}
	if e.revoked {
		return "", ErrRevoked
	}
	return e.role, nil
}
