package agent

import (
	"strings"
	"testing"
)

// Issue 17: the macOS hint named only dscacheutil (which leaves
// mDNSResponder's negative entries), and Windows had none.
func TestResolveFix(t *testing.T) {
	for goos, want := range map[string]string{
		"darwin":  "sudo killall -HUP mDNSResponder",
		"windows": "ipconfig /flushdns",
		"linux":   "resolvectl flush-caches",
	} {
		if got := resolveFix(goos); !strings.Contains(got, want) {
			t.Errorf("resolveFix(%s) = %q, want it to say %q", goos, got, want)
		}
	}
	if strings.Contains(resolveFix("windows"), "nsswitch") || strings.Contains(resolveFix("darwin"), "nsswitch") {
		t.Error("a Linux-only hint on macOS or Windows")
	}
}
