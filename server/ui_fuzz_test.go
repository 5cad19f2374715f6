package server

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// A post-login target never leaves the UI's origin, however a browser
// reads it: browsers drop tabs and newlines inside URLs and take '\' for
// '/'.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/clients", "//evil.example/x", "/\t/evil.example", "/\\evil.example", "https://evil.example", "/images?repo=a&tag=b", "/%2F%2Fevil", "javascript:alert(1)", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://127.0.0.1:8443/login")
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		if got != "/" && got != s {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", s, got)
		}
		browser := strings.Map(func(r rune) rune {
			switch {
			case r == '\t' || r == '\n' || r == '\r':
				return -1
			case r == '\\':
				return '/'
			}
			return r
		}, got)
		ref, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("safeNext(%q) = %q, which does not parse: %v", s, got, err)
		}
		if u := base.ResolveReference(ref); u.Scheme != "https" || u.Host != base.Host {
			t.Fatalf("safeNext(%q) = %q leads to %s", s, got, u)
		}
	})
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"24h", "7d", "365d", "366d", "281474976710657d", "-1d", "0d", "1h30m", " 2d ", "d", "1.5d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTTL(s)
		if err != nil {
			if !strings.Contains(err.Error(), "duration") && !strings.Contains(err.Error(), "too long") {
				t.Fatalf("parseTTL(%q): unclear error %v", s, err)
			}
			return
		}
		if strings.HasSuffix(strings.TrimSpace(s), "d") && (d <= 0 || d > maxTokenTTL || d%(24*time.Hour) != 0) {
			t.Fatalf("parseTTL(%q) = %s", s, d)
		}
	})
}
