package hostsfile

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/txn2/txeh"
)

// TestTxehPitfallsNotInherited runs the inputs behind the txeh pitfalls
// DESIGN.md lists through txeh and through this package: the test asserts
// this package's guarantee and logs what txeh does, for the record.
func TestTxehPitfallsNotInherited(t *testing.T) {
	txehAdd := func(in, ip, h string) string {
		hosts, err := txeh.NewHosts(&txeh.HostsConfig{RawText: &in})
		if err != nil {
			t.Fatal(err)
		}
		hosts.AddHostWithComment(ip, h, "edgecr")
		return hosts.RenderHostsFile()
	}

	t.Run("CRLF stays CRLF", func(t *testing.T) {
		in := "127.0.0.1 localhost\r\n"
		t.Logf("txeh: %q", txehAdd(in, "192.0.2.10", host))
		got, err := Add([]byte(in), ip1, host)
		if err != nil || strings.Count(string(got), "\r\n") != strings.Count(string(got), "\n") {
			t.Errorf("Add = %q, %v; want CRLF throughout", got, err)
		}
	})

	t.Run("the same address line keeps its spacing", func(t *testing.T) {
		in := "192.0.2.10\tnas.lan # edgecr\n"
		t.Logf("txeh: %q", txehAdd(in, "192.0.2.10", host))
		got, err := Add([]byte(in), ip1, host)
		if err != nil || !strings.HasPrefix(string(got), in) {
			t.Errorf("Add = %q, %v; want %q kept as it is", got, err, in)
		}
	})

	t.Run("invalid IP is an error", func(t *testing.T) {
		in := "127.0.0.1 localhost\n"
		t.Logf("txeh, 999.0.2.10: %q", txehAdd(in, "999.0.2.10", host))
		ip, _ := netip.ParseAddr("999.0.2.10")
		if _, err := Add([]byte(in), ip, host); !errors.Is(err, ErrInvalidIP) {
			t.Errorf("Add: got %v, want ErrInvalidIP", err)
		}
	})

	t.Run("a user's line is not taken over", func(t *testing.T) {
		in := "10.9.9.9 nas.lan " + host + "\n"
		t.Logf("txeh: %q", txehAdd(in, "192.0.2.10", host))
		got, err := Add([]byte(in), ip1, host)
		if !errors.Is(err, ErrHostOwnedByUser) {
			t.Errorf("Add = %q, %v; want ErrHostOwnedByUser", got, err)
		}
	})
}
