package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"
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

// IdentityStore is identities.json in the data dir. Writers (serve and the
// admin commands, possibly in different processes) take a file lock and
// replace the file atomically; readers never see a partial file.
type IdentityStore struct {
	path string
	lock string
}

// NewIdentityStore returns the store of the data dir dir.
func NewIdentityStore(dir string) *IdentityStore {
	return &IdentityStore{path: filepath.Join(dir, "identities.json"), lock: filepath.Join(dir, ".identities.lock")}
}

// Path is the file behind the store.
func (s *IdentityStore) Path() string { return s.path }

// Read returns the current records. A missing file is an error: the data dir
// has not been initialised.
func (s *IdentityStore) Read() (*Records, error) {
	b, ok, err := readOptional(s.path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("reading identities: %s does not exist (run edgecrd init)", s.path)
	}
	return parseRecords(s.path, b)
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

// Update runs fn on the records under the lock and writes the result. When
// create is false a missing file is an error.
func (s *IdentityStore) Update(create bool, fn func(*Records) error) error {
	unlock, err := lockFile(s.lock)
	if err != nil {
		return err
	}
	defer unlock()
	b, ok, err := readOptional(s.path)
	if err != nil {
		return err
	}
	r := &Records{}
	switch {
	case ok:
		if r, err = parseRecords(s.path, b); err != nil {
			return err
		}
	case !create:
		return fmt.Errorf("updating identities: %s does not exist (run edgecrd init)", s.path)
	}
	if err := fn(r); err != nil {
		return err
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding identities: %w", err)
	}
	return writeFileAtomic(s.path, append(out, '\n'), 0o600)
}

// Revoke marks identity id revoked. The running server sees it on the next
// request.
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
