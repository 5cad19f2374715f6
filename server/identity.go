package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Role is what an identity may do on the registry.
type Role string

// Roles, from least to most privileged.
const (
	RolePull  Role = "pull"  // read
	RolePush  Role = "push"  // read + write
	RoleAdmin Role = "admin" // everything: delete, catalog
)

// ParseRole checks a role name given on a command line or in a token.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RolePull, RolePush, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want pull, push or admin)", s)
}

func (r Role) level() int {
	switch r {
	case RolePull:
		return 1
	case RolePush:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether r includes the rights of need.
func (r Role) Allows(need Role) bool { return r.level() >= need.level() && need.level() > 0 }

// AdminUser is the user name of the device's admin identity.
const AdminUser = "admin"

// Identity is one credential the registry accepts. Only a hash of the secret
// is kept: secrets are 256-bit random strings, so a single SHA-256 is as
// strong as any slow KDF against guessing and costs about a microsecond.
type Identity struct {
	ID         string     `json:"id"` // the user name clients send
	Name       string     `json:"name"`
	Kind       string     `json:"kind,omitempty"` // "" (admin), "client" (joined), "kube" (pull secret)
	Role       Role       `json:"role"`
	SecretHash string     `json:"secretHash"`
	Created    time.Time  `json:"created"`
	Revoked    *time.Time `json:"revoked,omitempty"`
}

// Records is the content of identities.json.
type Records struct {
	Identities []*Identity `json:"identities"`
	Tokens     []*Token    `json:"tokens,omitempty"`
}

// Find returns the identity with id, or nil.
func (r *Records) Find(id string) *Identity {
	for _, i := range r.Identities {
		if i.ID == id {
			return i
		}
	}
	return nil
}

// NewSecret returns a fresh 256-bit secret, URL-safe base64 without padding.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashSecret is what identities.json stores for a secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func decodeHash(h string) ([32]byte, error) {
	var out [32]byte
	const prefix = "sha256:"
	if len(h) != len(prefix)+64 || h[:len(prefix)] != prefix {
		return out, fmt.Errorf("malformed secret hash %q", h)
	}
	if _, err := hex.Decode(out[:], []byte(h[len(prefix):])); err != nil {
		return out, fmt.Errorf("malformed secret hash: %w", err)
	}
	return out, nil
}

// IdentityStore is identities.json in the device's state: one document
// holding every identity and token, changed by compare-and-swap (Update),
// so that serve, admin commands and replicas on one bucket never lose each
// other's writes. A data dir keeps it as the file identities.json.
type IdentityStore struct {
	kv    kv.Store
	where string // the file or object, for errors
}

// NewIdentityStore returns the store of the data dir dir.
func NewIdentityStore(dir string) *IdentityStore { return localState(dir).Identities() }

// Path names the file or object behind the store.
func (s *IdentityStore) Path() string { return s.where }

// Read returns the current records. A missing document is an error: the
// device has not been initialised.
func (s *IdentityStore) Read() (*Records, error) {
	ctx, cancel := opCtx()
	defer cancel()
	r, _, err := s.read(ctx)
	return r, err
}

func (s *IdentityStore) read(ctx context.Context) (*Records, kv.Version, error) {
	b, ver, err := s.kv.Get(ctx, identitiesFile)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, "", fmt.Errorf("reading identities: %s does not exist (run edgecrd init)", s.where)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading identities %s: %w", s.where, err)
	}
	r, err := parseRecords(s.where, b)
	return r, ver, err
}

func parseRecords(path string, b []byte) (*Records, error) {
	var r Records
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading identities %s: corrupt file: %w", path, err)
	}
	for _, i := range r.Identities {
		if i == nil || i.ID == "" {
			return nil, fmt.Errorf("reading identities %s: corrupt file: identity without id", path)
		}
		if _, err := decodeHash(i.SecretHash); err != nil {
			return nil, fmt.Errorf("reading identities %s: identity %s: %w", path, i.ID, err)
		}
		if _, err := ParseRole(string(i.Role)); err != nil {
			return nil, fmt.Errorf("reading identities %s: identity %s: %w", path, i.ID, err)
		}
	}
	for _, tk := range r.Tokens {
		if tk == nil || tk.ID == "" {
			return nil, fmt.Errorf("reading identities %s: corrupt file: token without id", path)
		}
		if _, err := decodeHash(tk.SecretHash); err != nil {
			return nil, fmt.Errorf("reading identities %s: token %s: %w", path, tk.ID, err)
		}
	}
	return &r, nil
}

// updateAttempts bounds Update's compare-and-swap retries; with the jitter
// below, 30 writers racing on one bucket all get through well within it.
const updateAttempts = 200

// Update reads the records, runs fn on them and writes the result if
// nobody wrote in between (compare-and-swap on the version read); on a
// conflict it reads again and reruns fn, with a growing random pause, up
// to updateAttempts times or stateTimeout. fn must therefore depend only
// on the records it is given (it may run several times; the last run's
// effects are the ones written). When create is false a missing document
// is an error.
func (s *IdentityStore) Update(create bool, fn func(*Records) error) error {
	ctx, cancel := opCtx()
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := s.updateOnce(ctx, create, fn)
		if !errors.Is(err, kv.ErrConflict) {
			return err
		}
		if attempt >= updateAttempts {
			return fmt.Errorf("updating identities %s: %d conflicting writes in a row: %w", s.where, attempt, err)
		}
		// Up to 2 ms more per attempt, capped at 100 ms: the writers that
		// lost spread out instead of colliding again.
		pause := time.Duration(mrand.Int64N(int64(min(attempt*2, 100))*int64(time.Millisecond)) + 1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("updating identities %s: %w (after %d conflicting writes)", s.where, ctx.Err(), attempt)
		case <-time.After(pause):
		}
	}
}

func (s *IdentityStore) updateOnce(ctx context.Context, create bool, fn func(*Records) error) error {
	b, ver, err := s.kv.Get(ctx, identitiesFile)
	r := &Records{}
	switch {
	case err == nil:
		if r, err = parseRecords(s.where, b); err != nil {
			return err
		}
	case !errors.Is(err, kv.ErrNotFound):
		return fmt.Errorf("reading identities %s: %w", s.where, err)
	case !create:
		return fmt.Errorf("updating identities: %s does not exist (run edgecrd init)", s.where)
	}
	if err := fn(r); err != nil {
		return err
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding identities: %w", err)
	}
	if _, err := s.kv.Put(ctx, identitiesFile, append(out, '\n'), ver); err != nil {
		return fmt.Errorf("writing identities %s: %w", s.where, err)
	}
	return nil
}

// Revoke marks identity id revoked. A serve on the same data dir refuses it
// from the next request on; replicas on a bucket within 2 s (authn.go).
func (s *IdentityStore) Revoke(id string, now time.Time) error {
	return s.Update(false, func(r *Records) error {
		i := r.Find(id)
		if i == nil {
			return fmt.Errorf("revoking %s: %w", id, ErrNoSuchIdentity)
		}
		if i.Revoked == nil {
			i.Revoked = &now
		}
		return nil
	})
}

// ErrNoSuchIdentity is returned for an unknown identity id.
var ErrNoSuchIdentity = errors.New("no such identity")
