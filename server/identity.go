package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
