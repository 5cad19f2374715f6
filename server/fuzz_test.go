package server

import (
	"strings"
	"testing"
)

func FuzzParseToken(f *testing.F) {
	f.Add("edgecr1." + strings.Repeat("ab", 32) + ".0123456789abcdef." + strings.Repeat("x", 43))
	f.Add("edgecr1...")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseToken(s)
		if err != nil {
			if err != ErrTokenMalformed { // a fixed text: nothing of the input, so no secret, is echoed
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if got := FormatToken(p.Pin, p.ID, p.Secret); got != strings.TrimSpace(s) {
			t.Fatalf("round trip: %q -> %q", s, got)
		}
	})
}

func FuzzRepoName(f *testing.F) {
	for _, s := range []string{"/v2/a/b/manifests/x", "/v2/../x/blobs/uploads/", "/v2/A/tags/list", "/v2//manifests/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := repoNameOf(p)
		if !ok {
			return
		}
		if validRepoName(name) == nil {
			if strings.Contains(name, "..") || strings.ToLower(name) != name || strings.Contains(name, "//") || strings.HasPrefix(name, "/") {
				t.Fatalf("accepted %q", name)
			}
		}
	})
}
