package trust

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ReadOSRelease returns the os-release file of the system under root
// (/etc/os-release, else /usr/lib/os-release), or nil if it has neither.
func ReadOSRelease(root string) ([]byte, error) {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, ok, err := readIfExists(rooted(root, p))
		if err != nil {
			return nil, fmt.Errorf("reading os-release: %w", err)
		}
		if ok {
			return b, nil
		}
	}
	return nil, nil
}

// ParseOSRelease parses os-release(5) content into its variables, unquoting
// values. Malformed lines are skipped, as the format asks.
func ParseOSRelease(b []byte) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if v[0] == '"' {
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				} else {
					v = v[1 : len(v)-1]
				}
			} else {
				v = v[1 : len(v)-1]
			}
		}
		vars[k] = v
	}
	return vars
}

// osReleaseKinds maps os-release ID and ID_LIKE words to trust store kinds.
var osReleaseKinds = map[string]Kind{
	"debian":    Debian,
	"ubuntu":    Debian,
	"alpine":    Alpine,
	"rhel":      RHEL,
	"fedora":    RHEL,
	"centos":    RHEL,
	"arch":      Arch,
	"archlinux": Arch,
}

// DetectKind picks the trust store of a system from its GOOS and, on Linux,
// its os-release content (ID first, then ID_LIKE in order) and, failing that,
// from which single anchor directory exists under root. exists is called with
// paths under root. It is pure: the caller does the reading.
//
// Unlike smallstep/truststore, a stray /etc/pki/ca-trust on Ubuntu does not
// turn it into RHEL: os-release wins, and several anchor directories without
// a recognised os-release are an error rather than a guess.
func DetectKind(goos, root string, osRelease []byte, exists func(string) bool) (Kind, error) {
	switch goos {
	case "darwin":
		return MacOS, nil
	case "windows":
		return Windows, nil
	case "linux":
	default:
		return "", fmt.Errorf("detecting trust store for %s: %w", goos, ErrUnsupported)
	}
	vars := ParseOSRelease(osRelease)
	words := []string{strings.ToLower(vars["ID"])}
	words = append(words, strings.Fields(strings.ToLower(vars["ID_LIKE"]))...)
	for _, w := range words {
		if k, ok := osReleaseKinds[w]; ok {
			return k, nil
		}
	}
	var found []Kind
	for _, k := range []Kind{Debian, RHEL, Arch} {
		if exists(rooted(root, linuxLayouts[k].anchorDir)) {
			found = append(found, k)
		}
	}
	if len(found) == 1 && found[0] == Debian && exists(rooted(root, "/etc/alpine-release")) {
		return Alpine, nil
	}
	id := vars["ID"]
	if id == "" {
		id = "unknown"
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("detecting trust store of Linux distribution %q: %w: no known anchor directory", id, ErrUnsupported)
	default:
		return "", fmt.Errorf("detecting trust store of Linux distribution %q: %w: anchor directories of %v all exist", id, ErrUnsupported, found)
	}
}
