package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// TokenPrefix is the version tag every join token starts with.
const TokenPrefix = "edgecr1"

// ErrInvalidToken is wrapped by every error about a join token that does not
// have the form edgecr1.<pin>.<id>.<secret>.
var ErrInvalidToken = errors.New("invalid join token")

// Token is a parsed join token: edgecr1.<pin>.<id>.<secret>, where pin is the
// SHA-256 of the device CA certificate's DER (64 lower-case hex digits), id
// names the token on the device (16 lower-case hex digits) and secret is 32
// random bytes in unpadded base64url (43 characters).
//
// Token never shows its secret: String, GoString, LogValue and MarshalText
// all print it as <redacted>. Only the join request sends it.
type Token struct {
	Pin string // lower-case hex SHA-256 of the device CA's DER
	ID  string // token id, for messages and for `edgecrd token rm`

	secret string
}

// ParseToken parses a join token. Surrounding white space (a copy-paste)
// is ignored. Errors say which part is wrong and never echo any part of s.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: %d dot-separated parts, want 4 (%s.<pin>.<id>.<secret>)", ErrInvalidToken, len(parts), TokenPrefix)
	}
	if parts[0] != TokenPrefix {
		return Token{}, fmt.Errorf("%w: it does not start with %q", ErrInvalidToken, TokenPrefix+".")
	}
	if !isLowerHex(parts[1], 64) {
		return Token{}, fmt.Errorf("%w: the CA pin is not 64 lower-case hex digits", ErrInvalidToken)
	}
	if !isLowerHex(parts[2], 16) {
		return Token{}, fmt.Errorf("%w: the token id is not 16 lower-case hex digits", ErrInvalidToken)
	}
	if !isBase64URL(parts[3], 43) {
		return Token{}, fmt.Errorf("%w: the secret is not 43 base64url characters", ErrInvalidToken)
	}
	return Token{Pin: parts[1], ID: parts[2], secret: parts[3]}, nil
}

// String renders the token with its secret redacted.
func (t Token) String() string {
	return fmt.Sprintf("%s.%s.%s.<redacted>", TokenPrefix, t.Pin, t.ID)
}

// GoString keeps %#v from printing the secret.
func (t Token) GoString() string { return "agent.Token(" + t.String() + ")" }

// LogValue keeps slog from printing the secret.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// MarshalText keeps encoders from printing the secret.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// reveal returns the whole token, for the join request body only.
func (t Token) reveal() string {
	return TokenPrefix + "." + t.Pin + "." + t.ID + "." + t.secret
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isBase64URL(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
