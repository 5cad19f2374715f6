package agent

import "log/slog"

// Secret is a password that must never be shown: String, GoString,
// LogValue and MarshalText print <redacted>. Convert it to string only to
// hand it to the credential store or an Authorization header.
type Secret string

const redacted = "<redacted>"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) reveal() string             { return string(s) }
