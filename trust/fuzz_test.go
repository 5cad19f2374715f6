package trust_test

import (
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
)

// /etc/os-release picks the trust store: any content parses, and every
// key comes from a line of it.
func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("ID=debian\nID_LIKE=\"ubuntu debian\"\n# c\nbroken\n"))
	f.Add([]byte("NAME='x\nID=\"\"\"\n=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k := range trust.ParseOSRelease(b) {
			if !strings.Contains(string(b), k+"=") {
				t.Fatalf("key %q is on no line of %q", k, b)
			}
		}
	})
}
