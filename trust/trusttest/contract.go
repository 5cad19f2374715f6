package trusttest

import (
	"context"
	"testing"

	"github.com/edgecr/edgecr/trust"
)

// TestStore is the contract every trust.Store keeps: Installed tells the
// truth, Install and Uninstall are idempotent and report whether they changed
// anything, another certificate is not mistaken for the installed one, bad
// input is refused, and after Uninstall nothing is installed. s must start
// without name installed.
func TestStore(t *testing.T, s trust.Store, name string) {
	t.Helper()
	ctx := context.Background()
	ca, other := NewCA(t, "contract CA"), NewCA(t, "contract CA 2")

	installed := func(pem []byte, want bool) {
		t.Helper()
		got, err := s.Installed(ctx, name, pem)
		if err != nil {
			t.Fatalf("Installed: %v", err)
		}
		if got != want {
			t.Fatalf("Installed = %v, want %v", got, want)
		}
	}
	step := func(what string, f func(context.Context, string, []byte) (bool, error), pem []byte, want bool) {
		t.Helper()
		got, err := f(ctx, name, pem)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Fatalf("%s changed = %v, want %v", what, got, want)
		}
	}

	installed(ca, false)
	step("Uninstall before Install", s.Uninstall, ca, false)
	step("Install", s.Install, ca, true)
	installed(ca, true)
	installed(other, false)
	step("Install again", s.Install, ca, false)
	installed(ca, true)
	step("Uninstall", s.Uninstall, ca, true)
	installed(ca, false)
	step("Uninstall again", s.Uninstall, ca, false)

	if _, err := s.Install(ctx, name, []byte("not a certificate")); err == nil {
		t.Fatalf("Install of garbage succeeded")
	}
	if _, err := s.Install(ctx, "", ca); err == nil {
		t.Fatalf("Install with empty name succeeded")
	}
	installed(ca, false)
}
