package hostsfile

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCanonicalHost(t *testing.T) {
	valid := map[string]string{
		"ecr.device.lan":        "ecr.device.lan",
		"ECR.Device.LAN":        "ecr.device.lan",
		"registry":              "registry",
		"a-b.c0":                "a-b.c0",
		"1ecr.example":          "1ecr.example",
		strings.Repeat("a", 63): strings.Repeat("a", 63),
	}
	for in, want := range valid {
		got, err := canonicalHost(in)
		if err != nil || got != want {
			t.Errorf("canonicalHost(%q) = %q, %v; want %q, nil", in, got, err, want)
		}
	}
	invalid := []string{
		"",
		"ecr.lan\n10.0.0.1 evil",
		"ecr.lan#x",
		"ecr lan",
		"ecr\tlan",
		"ecr.lan\r",
		"ecr..lan",
		".ecr.lan",
		"ecr.lan.",
		"-ecr.lan",
		"ecr-.lan",
		"ecr_1.lan",
		"écr.lan",
		"ecr.lan\x00",
		"192.0.2.1",
		"10",
		"::1",
		strings.Repeat("a", 64) + ".lan",
		strings.Repeat("a.", 127) + "ab",
	}
	for _, in := range invalid {
		if got, err := canonicalHost(in); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("canonicalHost(%q) = %q, %v; want ErrInvalidHost", in, got, err)
		}
	}
}

func TestEntryAddr(t *testing.T) {
	valid := map[netip.Addr]netip.Addr{
		netip.MustParseAddr("192.0.2.10"):        netip.MustParseAddr("192.0.2.10"),
		netip.MustParseAddr("2001:db8::1"):       netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::ffff:192.0.2.10"): netip.MustParseAddr("192.0.2.10"),
		netip.MustParseAddr("127.0.0.1"):         netip.MustParseAddr("127.0.0.1"),
	}
	for in, want := range valid {
		if got, err := entryAddr(in); err != nil || got != want {
			t.Errorf("entryAddr(%v) = %v, %v; want %v, nil", in, got, err, want)
		}
	}
	invalid := []netip.Addr{
		{},
		netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("::"),
	}
	for _, in := range invalid {
		if got, err := entryAddr(in); !errors.Is(err, ErrInvalidIP) {
			t.Errorf("entryAddr(%v) = %v, %v; want ErrInvalidIP", in, got, err)
		}
	}
}
