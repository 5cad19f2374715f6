package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Token is a join token as stored: only the hash of its secret.
type Token struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secretHash"`
	Role       Role      `json:"role"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Uses       int       `json:"uses"` // how many joins it allows
	Used       int       `json:"used"`
}

// State is "valid", "expired" or "used up" at now.
func (t *Token) State(now time.Time) string {
	switch {
	case !now.Before(t.Expires):
		return "expired"
	case t.Used >= t.Uses:
		return "used up"
	}
	return "valid"
}

// TokenPrefix starts every join token; the version lets the format change.
const TokenPrefix = "edgecr1"

// FormatToken is the string a user passes to edgecr join:
// edgecr1.<CA pin hex>.<id>.<secret>. The pin lets the client verify the
// device before it sends the secret (k3s / kubeadm style).
func FormatToken(caPin, id, secret string) string {
	return strings.Join([]string{TokenPrefix, strings.TrimPrefix(caPin, "sha256:"), id, secret}, ".")
}

// ParsedToken is a token string taken apart.
type ParsedToken struct {
	Pin, ID, Secret string // Pin is "sha256:<hex>"
}

// Errors of token parsing and redemption. Their texts are what clients see.
var (
	ErrTokenMalformed = errors.New("malformed join token (want edgecr1.<pin>.<id>.<secret>)")
	ErrTokenInvalid   = errors.New("join token is not valid for this device")
	ErrTokenExpired   = errors.New("join token has expired")
	ErrTokenUsedUp    = errors.New("join token has been used up")
	ErrNoSuchToken    = errors.New("no such token")
)

// ParseToken splits a token string; it never puts the secret in an error.
func ParseToken(s string) (ParsedToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix {
		return ParsedToken{}, ErrTokenMalformed
	}
	pin, id, secret := parts[1], parts[2], parts[3]
	if len(pin) != 64 || !isHex(pin) || len(id) != 16 || !isHex(id) || len(secret) < 32 {
		return ParsedToken{}, ErrTokenMalformed
	}
	return ParsedToken{Pin: "sha256:" + pin, ID: id, Secret: secret}, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// TokenOptions configure a new join token.
type TokenOptions struct {
	TTL  time.Duration
	Uses int
	Role Role
}

// CreateToken stores a new join token and returns it with its secret (the
// only time the secret exists outside the token string).
func (s *State) CreateToken(o TokenOptions, now time.Time) (*Token, string, error) {
	if o.TTL <= 0 {
		return nil, "", fmt.Errorf("creating token: --ttl must be positive, got %s", o.TTL)
	}
	if o.Uses <= 0 {
		return nil, "", fmt.Errorf("creating token: --uses must be at least 1, got %d", o.Uses)
	}
	if o.Role != RolePull && o.Role != RolePush {
		return nil, "", fmt.Errorf("creating token: role %q: join tokens give pull or push", o.Role)
	}
	id, err := randomHex(8)
	if err != nil {
		return nil, "", err
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, "", err
	}
	tk := &Token{ID: id, SecretHash: HashSecret(secret), Role: o.Role, Created: now.UTC(), Expires: now.Add(o.TTL).UTC(), Uses: o.Uses}
	store := s.Identities()
	ctx, cancel := opCtx()
	defer cancel()
	if err := store.ensureLayout(ctx); err != nil {
		return nil, "", err
	}
	if _, err := store.kv.Put(ctx, tokenKey(id), encodeToken(tk), ""); err != nil {
		return nil, "", fmt.Errorf("creating token %s: %w", store.keyWhere(tokenKey(id)), err)
	}
	return tk, FormatToken(s.CA.Fingerprint(), id, secret), nil
}

// RemoveToken deletes a token; clients that joined with it stay.
func (s *State) RemoveToken(id string) error {
	store := s.Identities()
	ctx, cancel := opCtx()
	defer cancel()
	if err := store.ensureLayout(ctx); err != nil {
		return err
	}
	if !validTokenID(id) {
		return fmt.Errorf("removing token %s: %w", id, ErrNoSuchToken)
	}
	if _, _, err := store.kv.Get(ctx, tokenKey(id)); errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("removing token %s: %w", id, ErrNoSuchToken)
	} else if err != nil {
		return fmt.Errorf("removing token %s: %w", store.keyWhere(tokenKey(id)), err)
	}
	if err := store.kv.Delete(ctx, tokenKey(id), ""); err != nil {
		return fmt.Errorf("removing token %s: %w", store.keyWhere(tokenKey(id)), err)
	}
	return nil
}

// JoinResult is what a redeemed token gives a client.
type JoinResult struct {
	ClientID string
	Secret   string
	Role     Role
}

// Redeem checks a token and spends one use of it on a new client identity
// named name: one CAS on the token's key (so a use count is exact however
// many replicas redeem it at once), then one on the new identity's shard;
// the joins on one token in this State share both (redeem.go). A failure
// between the two loses the use, never gives one too many.
func (s *State) Redeem(p ParsedToken, name string, now time.Time) (*JoinResult, error) {
	if p.Pin != s.CA.Fingerprint() {
		return nil, ErrTokenInvalid
	}
	store := s.Identities()
	ctx, cancel := opCtx()
	defer cancel()
	if err := store.ensureLayout(ctx); err != nil {
		return nil, err
	}
	return s.tokenCommits().redeem(store, p, name, now)
}

// CleanClientName makes a client-supplied name safe to store and print.
func CleanClientName(n string) string {
	var b strings.Builder
	for _, r := range n {
		if b.Len() >= 64 {
			break
		}
		if r >= 0x20 && r != 0x7f && r != '"' && r != '\\' {
			b.WriteRune(r)
		}
	}
	if out := strings.TrimSpace(b.String()); out != "" {
		return out
	}
	return "unnamed"
}
