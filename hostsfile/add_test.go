package hostsfile

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

const host = "ecr.device.lan"

var (
	ip1 = netip.MustParseAddr("192.0.2.10")
	ip2 = netip.MustParseAddr("192.0.2.20")
)

// blk is the block Add writes for host and ip, lines ended by eol.
func blk(ip, host, eol string) string {
	return "# BEGIN edgecr " + host + eol + ip + " " + host + eol + "# END edgecr " + host + eol
}

// userHosts is a hosts file as people write them: tabs, aligned columns,
// trailing spaces, comments at the end of lines, blank lines.
const userHosts = "# /etc/hosts\n" +
	"127.0.0.1\tlocalhost\n" +
	"127.0.1.1   box.lan   box   \n" +
	"\n" +
	"::1     localhost ip6-localhost ip6-loopback # IPv6\n" +
	"  # indented comment\t\n" +
	"10.0.0.5 nas.lan\t# the NAS\n"

func TestAdd(t *testing.T) {
	crlf := strings.ReplaceAll(userHosts, "\n", "\r\n")
	tests := []struct {
		name string
		in   string
		ip   netip.Addr
		host string
		want string
	}{
		{"empty file", "", ip1, host, blk("192.0.2.10", host, "\n")},
		{"LF file", userHosts, ip1, host, userHosts + blk("192.0.2.10", host, "\n")},
		{"CRLF file", crlf, ip1, host, crlf + blk("192.0.2.10", host, "\r\n")},
		{"no final newline", "127.0.0.1 localhost", ip1, host,
			"127.0.0.1 localhost\n" + strings.TrimSuffix(blk("192.0.2.10", host, "\n"), "\n")},
		{"CRLF without final newline", "a\r\nb", ip1, host,
			"a\r\nb\r\n" + strings.TrimSuffix(blk("192.0.2.10", host, "\r\n"), "\r\n")},
		{"same IP again", userHosts + blk("192.0.2.10", host, "\n"), ip1, host,
			userHosts + blk("192.0.2.10", host, "\n")},
		{"new IP replaces the line in place", blk("192.0.2.10", host, "\n") + userHosts, ip2, host,
			blk("192.0.2.20", host, "\n") + userHosts},
		{"second device", userHosts + blk("192.0.2.10", host, "\n"), ip2, "ecr.other.lan",
			userHosts + blk("192.0.2.10", host, "\n") + blk("192.0.2.20", "ecr.other.lan", "\n")},
		{"host in upper case", userHosts, ip1, "ECR.Device.LAN", userHosts + blk("192.0.2.10", host, "\n")},
		{"upper-case markers", "# BEGIN edgecr ECR.DEVICE.LAN\n1.1.1.1 ECR.DEVICE.LAN\n# END edgecr ecr.device.lan\n", ip1, host,
			blk("192.0.2.10", host, "\n")},
		{"IPv6", userHosts, netip.MustParseAddr("2001:DB8::A"), host, userHosts + blk("2001:db8::a", host, "\n")},
		{"IPv4-mapped IPv6 written as IPv4", "", netip.MustParseAddr("::ffff:192.0.2.10"), host, blk("192.0.2.10", host, "\n")},
		{"commented-out user line does not count", "#192.0.2.99 " + host + "\n", ip1, host,
			"#192.0.2.99 " + host + "\n" + blk("192.0.2.10", host, "\n")},
		{"name in a trailing comment does not count", "10.0.0.1 nas # " + host + "\n", ip1, host,
			"10.0.0.1 nas # " + host + "\n" + blk("192.0.2.10", host, "\n")},
		{"name as a part of a longer name does not count", "10.0.0.1 x" + host + " " + host + ".x\n", ip1, host,
			"10.0.0.1 x" + host + " " + host + ".x\n" + blk("192.0.2.10", host, "\n")},
		{"duplicate blocks become one", blk("1.1.1.1", host, "\n") + "mid\n" + blk("2.2.2.2", host, "\n"), ip1, host,
			blk("192.0.2.10", host, "\n") + "mid\n"},
		{"re-spaced block is rewritten", "#\tBEGIN edgecr  " + host + "\n1.1.1.1\t" + host + "\n# END\tedgecr " + host + " \n", ip1, host,
			blk("192.0.2.10", host, "\n")},
		{"dominant ending of the other lines", "a\r\nb\r\nc\n", ip1, host, "a\r\nb\r\nc\n" + blk("192.0.2.10", host, "\r\n")},
		{"block with its own ending in a file of the other", "a\nb\n" + blk("1.1.1.1", host, "\r\n"), ip1, host,
			"a\nb\n" + blk("192.0.2.10", host, "\n")},
		{"file of only a CRLF block stays CRLF", blk("1.1.1.1", host, "\r\n"), ip1, host, blk("192.0.2.10", host, "\r\n")},
		{"last line ending in CR", "a\n\r", ip1, host, "a\n\r\r\n" + strings.TrimSuffix(blk("192.0.2.10", host, "\n"), "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Add([]byte(tt.in), tt.ip, tt.host)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Add(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			again, err := Add(got, tt.ip, tt.host)
			if err != nil || string(again) != string(got) {
				t.Errorf("Add twice = %q, %v; want %q, nil", again, err, got)
			}
		})
	}
}

func TestAddRefusesUserLine(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantLine int
		wantText string
	}{
		{"same IP", "127.0.0.1 localhost\n192.0.2.10 " + host + "\n", 2, "192.0.2.10 " + host},
		{"other IP", "10.9.9.9 " + host, 1, "10.9.9.9 " + host},
		{"other case", "a\n\n10.9.9.9\tECR.Device.Lan\t\n", 3, "10.9.9.9\tECR.Device.Lan\t"},
		{"alias among other names", "10.9.9.9 nas " + host + " x # mine\r\n", 1, "10.9.9.9 nas " + host + " x # mine"},
		{"IPv6 line", "2001:db8::9 " + host + "\n", 1, "2001:db8::9 " + host},
		{"user line after edgecr's block", blk("192.0.2.10", host, "\n") + "10.9.9.9 " + host + "\n", 4, "10.9.9.9 " + host},
		{"inside another host's block",
			"# BEGIN edgecr ecr.other.lan\n10.9.9.9 " + host + "\n192.0.2.10 ecr.other.lan\n# END edgecr ecr.other.lan\n",
			2, "10.9.9.9 " + host},
		{"address that does not parse", "not-an-ip " + host + "\n", 1, "not-an-ip " + host},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Add([]byte(tt.in), ip1, host)
			if !errors.Is(err, ErrHostOwnedByUser) {
				t.Fatalf("Add(%q) = %q, %v; want ErrHostOwnedByUser", tt.in, got, err)
			}
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConflictError", err)
			}
			if ce.Line != tt.wantLine || ce.Text != tt.wantText || ce.Host != host {
				t.Errorf("ConflictError = %+v; want line %d text %q host %s", ce, tt.wantLine, tt.wantText, host)
			}
			msg := err.Error()
			for _, want := range []string{"line " + strconv.Itoa(tt.wantLine), strconv.Quote(tt.wantText), host, "remove or comment out that line"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestMalformedBlocks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line string // the line number the message must name
	}{
		{"BEGIN without END", "a\n# BEGIN edgecr " + host + "\n1.1.1.1 " + host + "\n", "line 2"},
		{"END without BEGIN", "a\n1.1.1.1 " + host + "\n# END edgecr " + host + "\n", "line 3"},
		{"nested", "# BEGIN edgecr a.lan\n# BEGIN edgecr " + host + "\n# END edgecr " + host + "\n# END edgecr a.lan\n", "line 2"},
		{"END of another host", "# BEGIN edgecr " + host + "\n# END edgecr a.lan\n", "line 2"},
		{"broken block of another host", "# BEGIN edgecr a.lan\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, aerr := Add([]byte(tt.in), ip1, host)
			_, rerr := Remove([]byte(tt.in), host)
			_, lerr := Lookup([]byte(tt.in), host)
			for _, err := range []error{aerr, rerr, lerr} {
				if !errors.Is(err, ErrMalformedBlock) || !strings.Contains(err.Error(), tt.line) {
					t.Errorf("got %v; want ErrMalformedBlock naming %s", err, tt.line)
				}
			}
		})
	}
}

func TestAddInvalidInput(t *testing.T) {
	if _, err := Add(nil, netip.Addr{}, host); !errors.Is(err, ErrInvalidIP) {
		t.Errorf("zero Addr: got %v, want ErrInvalidIP", err)
	}
	if _, err := Add(nil, netip.MustParseAddr("0.0.0.0"), host); !errors.Is(err, ErrInvalidIP) {
		t.Errorf("0.0.0.0: got %v, want ErrInvalidIP", err)
	}
	for _, h := range []string{"", "a\nb", "a#b", "a b", "a.lan\r\n10.0.0.1 evil.lan"} {
		if _, err := Add(nil, ip1, h); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("host %q: got %v, want ErrInvalidHost", h, err)
		}
		if _, err := Remove(nil, h); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Remove host %q: got %v, want ErrInvalidHost", h, err)
		}
		if _, err := Lookup(nil, h); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Lookup host %q: got %v, want ErrInvalidHost", h, err)
		}
	}
}

// TestAddAll: a replicated device gets one line per address in its block,
// in the order given; a changed set rewrites the block in place, a single
// address gives exactly Add's block, and Remove restores the file.
func TestAddAll(t *testing.T) {
	ip3 := netip.MustParseAddr("2001:db8::30")
	crlf := strings.ReplaceAll(userHosts, "\n", "\r\n")
	three := "# BEGIN edgecr " + host + "\r\n" +
		"192.0.2.10 " + host + "\r\n" +
		"192.0.2.20 " + host + "\r\n" +
		"2001:db8::30 " + host + "\r\n" +
		"# END edgecr " + host + "\r\n"
	out, err := AddAll([]byte(crlf), []netip.Addr{ip1, ip2, ip3, ip2, netip.MustParseAddr("::ffff:192.0.2.10")}, host)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), crlf+three; got != want {
		t.Fatalf("AddAll =\n%q\nwant\n%q", got, want)
	}
	// A replica goes away: the block shrinks in place, after it the user's
	// lines stay.
	withTail := []byte(string(out) + "10.9.9.9 other.lan\r\n")
	shrunk, err := AddAll(withTail, []netip.Addr{ip2}, host)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(shrunk), crlf+blk("192.0.2.20", host, "\r\n")+"10.9.9.9 other.lan\r\n"; got != want {
		t.Fatalf("AddAll with one address left =\n%q\nwant\n%q", got, want)
	}
	single, err := Add(withTail, ip2, host)
	if err != nil || string(single) != string(shrunk) {
		t.Fatalf("Add = %q, %v; want AddAll's %q", single, err, shrunk)
	}
	back, err := Remove(out, host)
	if err != nil || string(back) != crlf {
		t.Fatalf("Remove(AddAll(x)) = %q, %v; want x", back, err)
	}
	entries, err := Lookup(out, host)
	if err != nil || len(entries) != 3 || entries[0].Addr != ip1 || entries[2].Addr != ip3 || !entries[1].Owned {
		t.Fatalf("Lookup = %+v, %v", entries, err)
	}

	for _, c := range []struct {
		name string
		ips  []netip.Addr
		want error
	}{
		{"none", nil, ErrInvalidIP},
		{"one invalid", []netip.Addr{ip1, {}}, ErrInvalidIP},
		{"unspecified", []netip.Addr{ip1, netip.IPv4Unspecified()}, ErrInvalidIP},
	} {
		if _, err := AddAll([]byte(userHosts), c.ips, host); !errors.Is(err, c.want) {
			t.Errorf("%s: AddAll = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := AddAll([]byte("10.0.0.1 "+host+"\n"), []netip.Addr{ip1, ip2}, host); !errors.Is(err, ErrHostOwnedByUser) {
		t.Errorf("AddAll over a user's line = %v, want ErrHostOwnedByUser", err)
	}
}
