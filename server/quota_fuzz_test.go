package server

import (
	"strconv"
	"strings"
	"testing"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"40GiB", "500MB", "1.5GB", "100MiB", "1048576", "12XB", "", ".", "1.", ".5k", "9223372036854775807", "9223372036854775808", "8EiB", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		// Whatever parses, its exact byte count parses back to itself.
		if back, err := ParseSize(strconv.FormatInt(n, 10) + "B"); err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, but %dB parses to %d, %v", s, n, n, back, err)
		}
		// A plain integer is a byte count.
		if d := strings.TrimSpace(s); d != "" && strings.Trim(d, "0123456789") == "" {
			if want, err := strconv.ParseInt(d, 10, 64); err == nil && want != n {
				t.Fatalf("ParseSize(%q) = %d, want %d", s, n, want)
			}
		}
		// Binary units are at least as large as decimal ones.
		if t2 := strings.TrimSpace(s); strings.HasSuffix(strings.ToLower(t2), "mb") {
			bin, err := ParseSize(t2[:len(t2)-2] + "MiB")
			if err == nil && bin < n {
				t.Fatalf("%q = %d but MiB gives %d", s, n, bin)
			}
		}
	})
}
