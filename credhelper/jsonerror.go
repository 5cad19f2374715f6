package credhelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// ErrMalformed is wrapped by every error about a credentials file or Docker
// config that does not parse. Such a file is never written.
var ErrMalformed = errors.New("malformed JSON")

// malformed describes a decoding error without quoting the input: the
// files hold secrets (ours, and the base64 "auth" of Docker's auths), and
// encoding/json's messages quote the offending character or number.
func malformed(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%w at byte offset %d", ErrMalformed, syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		field := typ.Field
		if field == "" {
			field = "top-level value"
		}
		return fmt.Errorf("%w: %s is not a JSON %s (byte offset %d)", ErrMalformed, field, jsonKind(typ.Type.Kind()), typ.Offset)
	}
	return ErrMalformed
}

// jsonKind names the JSON type that decodes into a Go kind.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	default:
		return "number"
	}
}
