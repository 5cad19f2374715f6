package kv

import (
	"strings"
	"testing"
)

func FuzzEscapeSegment(f *testing.F) {
	for _, s := range []string{"a", "A", "%41", "a.v", "日本", "..", "x%2", "%zz", "-_", "con", "com1", "nul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := escapeSegment(s)
		if strings.ContainsAny(e, "./\\:*?\"<>|") || (s != "" && e == "") {
			t.Fatalf("escapeSegment(%q) = %q: not a safe file name", s, e)
		}
		if windowsDevice(e) {
			t.Fatalf("escapeSegment(%q) = %q: a name Windows reserves", s, e)
		}
		if u, ok := unescapeSegment(e); !ok || u != s {
			t.Fatalf("unescapeSegment(escapeSegment(%q)) = %q, %v", s, u, ok)
		}
		// Any name is either the canonical escape of exactly one segment or not ours.
		if u, ok := unescapeSegment(s); ok && escapeSegment(u) != s {
			t.Fatalf("unescapeSegment(%q) = %q accepted a non-canonical name", s, u)
		}
		// Escaping preserves byte order only up to "%": List sorts, so
		// only check that distinct segments stay distinct.
		if e2 := escapeSegment(s + "x"); e2 == e {
			t.Fatalf("%q and %q escape alike", s, s+"x")
		}
	})
}
