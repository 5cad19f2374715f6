package credhelper

import (
	"errors"
	"fmt"
	"strings"
)

// errInvalidServerURL is returned for a server URL that names no host.
var errInvalidServerURL = errors.New("invalid server URL")

// normalizeServerURL reduces what Docker and go-containerregistry pass as a
// server URL to the registry's host[:port], the key of the store:
//
//	host:port, https://host:port, http://host:port/v2/, host:port/repo/name
//
// all become "host:port". The host is lowercased (DNS names are not case
// sensitive); the port is kept as written, so no two different ports or
// hosts ever share an entry. User info ("user:pw@") is dropped and never
// echoed in an error.
func normalizeServerURL(serverURL string) (string, error) {
	s := strings.TrimSpace(serverURL)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+len("://"):]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToLower(s)
	if s == "" || strings.HasPrefix(s, ":") || strings.HasSuffix(s, ":") {
		return "", errInvalidServerURL
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return "", fmt.Errorf("%w: unexpected character %q in host", errInvalidServerURL, c)
		}
	}
	return s, nil
}
