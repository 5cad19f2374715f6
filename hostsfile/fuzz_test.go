package hostsfile

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/txn2/txeh"
)

// FuzzAddRemove checks Add and Remove on any input (see checkAdd).
//
//	go test ./hostsfile/ -run '^$' -fuzz '^FuzzAddRemove$' -fuzztime 60s
func FuzzAddRemove(f *testing.F) {
	for _, in := range roundTripInputs {
		f.Add([]byte(in), "192.0.2.10", host)
	}
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.in"))
	for _, name := range golden {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "2001:db8::1", "ECR.device.lan")
	}
	f.Add([]byte("10.0.0.1 "+host+"\n"), "192.0.2.10", host)
	f.Add([]byte(blk("1.1.1.1", host, "\r\n")+"x\n"+blk("2.2.2.2", host, "\n")), "192.0.2.10", host)
	f.Add([]byte("a\n"+strings.TrimSuffix(blk("1.1.1.1", host, "\n"), "\n")), "192.0.2.10", host)
	f.Add([]byte("# BEGIN edgecr "+host+"\n"), "192.0.2.10", host)
	f.Add([]byte("a\r"), "::ffff:1.2.3.4", "a")
	f.Add([]byte("a"), "fe80::1%eth0", "a-b")
	f.Add([]byte(""), "192.0.2.10", "a\nb")

	f.Fuzz(func(t *testing.T, in []byte, ipText, h string) {
		ip, _ := netip.ParseAddr(ipText) // the zero Addr when it does not parse: Add must refuse it
		checkAdd(t, in, ip, h)
		checkRemove(t, in, h)
	})
}

// FuzzAddAll checks AddAll with two addresses on any input (see checkAddAll).
//
//	go test ./hostsfile/ -run '^$' -fuzz '^FuzzAddAll$' -fuzztime 60s
func FuzzAddAll(f *testing.F) {
	for _, in := range roundTripInputs {
		f.Add([]byte(in), "192.0.2.10", "192.0.2.11", host)
	}
	f.Add([]byte(blk("1.1.1.1", host, "\r\n")), "192.0.2.10", "2001:db8::1", host)
	f.Add([]byte("10.0.0.1 "+host+"\n"), "192.0.2.10", "192.0.2.11", host)
	f.Add([]byte("a"), "192.0.2.10", "192.0.2.10", "a")
	f.Add([]byte("a\n"), "192.0.2.10", "::ffff:192.0.2.10", "a")
	f.Add([]byte(""), "192.0.2.10", "bogus", "a")
	f.Fuzz(func(t *testing.T, in []byte, ip1, ip2, h string) {
		a, _ := netip.ParseAddr(ip1)
		b, _ := netip.ParseAddr(ip2)
		if out, ok := checkAddAll(t, in, []netip.Addr{a, b}, h); ok {
			// A replica leaves: the block shrinks to the other address.
			checkAddAll(t, out, []netip.Addr{b}, h)
		}
		checkRemove(t, in, h)
	})
}

// FuzzSequence builds hosts files out of the lines that matter (markers,
// user lines for the same hosts, CR, CRLF, a missing final newline) and
// applies a sequence of Adds and Removes for two hosts, checking each step.
// Random bytes rarely spell a marker line; this target always does.
//
//	go test ./hostsfile/ -run '^$' -fuzz '^FuzzSequence$' -fuzztime 60s
func FuzzSequence(f *testing.F) {
	f.Add([]byte{0, 1, 2}, []byte{0, 1, 2, 3, 4})
	f.Add([]byte{0, 8, 12, 9, 1 | 64}, []byte{0, 4, 2})
	f.Add([]byte{16, 17, 0, 18, 19, 21}, []byte{1, 0, 3, 2})
	f.Add([]byte{14, 15 | 64}, []byte{0, 0, 2, 2})
	f.Add([]byte{0, 8, 9, 10, 1}, []byte{128, 4 | 128, 0, 2})

	fragments := []string{
		"127.0.0.1\tlocalhost",
		"# a comment  ",
		"",
		"  \t",
		"10.0.0.1 a.lan",
		"10.0.0.1 nas A.LAN # mine",
		"#10.0.0.1 a.lan",
		"192.0.2.1 b.lan.x xb.lan",
		"# BEGIN edgecr a.lan",
		"192.0.2.9 a.lan",
		"# END edgecr a.lan",
		"# BEGIN edgecr b.lan",
		"192.0.2.9 b.lan",
		"# END edgecr b.lan",
		"\r",
		"x\r",
		"bogus b.lan",
		"#\tBEGIN  edgecr A.lan",
		"# END edgecr A.LAN ",
		"# BEGIN edgecr c.lan",
		"# END edgecr c.lan",
		"# BEGIN edgecr of mine",
	}
	hosts := []string{"a.lan", "B.lan"}
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("192.0.2.9")}

	f.Fuzz(func(t *testing.T, shape, ops []byte) {
		var b strings.Builder
		for i, c := range shape {
			b.WriteString(fragments[int(c&63)%len(fragments)])
			switch {
			case c&64 != 0 && i == len(shape)-1: // no final newline
			case c&128 != 0:
				b.WriteString("\r\n")
			default:
				b.WriteString("\n")
			}
		}
		content := []byte(b.String())
		for _, op := range ops {
			h := hosts[op&1]
			if op&2 != 0 {
				if out, ok := checkRemove(t, content, h); ok {
					content = out
				}
				continue
			}
			if op&128 != 0 { // a replicated device: two addresses
				i := int(op>>2) % len(ips)
				if out, ok := checkAddAll(t, content, []netip.Addr{ips[i], ips[(i+1)%len(ips)]}, h); ok {
					content = out
				}
				continue
			}
			if out, ok := checkAdd(t, content, ips[int(op>>2)%len(ips)], h); ok {
				content = out
			}
		}
	})
}

// checkAdd checks Add(in, ip, h): it does not panic or touch its input,
// fails only with the package's errors, and when it succeeds:
//   - Remove(Add(x)) == Remove(x), which is x itself when x has no block
//     for the host: Add then Remove restores the input exactly;
//   - Add is idempotent, and Lookup (and txeh, independently) see exactly
//     one mapping of the host, edgecr's, to ip;
//   - every line outside the host's block keeps its bytes, and whether the
//     file ends with a line terminator does not change.
func checkAdd(t *testing.T, in []byte, ip netip.Addr, h string) ([]byte, bool) {
	t.Helper()
	out, ok := checkAddAll(t, in, []netip.Addr{ip}, h)
	if single, err := Add(in, ip, h); ok && (err != nil || !bytes.Equal(single, out)) {
		t.Fatalf("Add(x) = %q, %v; want AddAll(x) with one address, %q", single, err, out)
	}
	return out, ok
}

// checkAddAll is checkAdd for several addresses: Lookup and txeh see one
// owned line per distinct address, in the order given.
func checkAddAll(t *testing.T, in []byte, ips []netip.Addr, h string) ([]byte, bool) {
	t.Helper()
	orig := bytes.Clone(in)
	out, err := AddAll(in, ips, h)
	if !bytes.Equal(in, orig) {
		t.Fatalf("Add modified its input")
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidIP) && !errors.Is(err, ErrInvalidHost) &&
			!errors.Is(err, ErrMalformedBlock) && !errors.Is(err, ErrHostOwnedByUser) {
			t.Fatalf("Add: unexpected error %v", err)
		}
		return nil, false
	}
	canon, _ := canonicalHost(h)
	var want []netip.Addr
	for _, ip := range ips {
		if !slices.Contains(want, ip.Unmap()) {
			want = append(want, ip.Unmap())
		}
	}

	removed, err := Remove(in, h)
	if err != nil {
		t.Fatalf("Remove(x) failed where Add(x) succeeded: %v", err)
	}
	back, err := Remove(out, h)
	if err != nil {
		t.Fatalf("Remove(Add(x)): %v", err)
	}
	if !bytes.Equal(back, removed) {
		t.Fatalf("Remove(Add(x)) = %q, want Remove(x) = %q", back, removed)
	}
	if again, err := AddAll(out, ips, h); err != nil || !bytes.Equal(again, out) {
		t.Fatalf("Add is not idempotent: %q, %v; want %q", again, err, out)
	}

	entries, err := Lookup(out, h)
	if err != nil {
		t.Fatalf("Lookup(Add(x)): %v", err)
	}
	if len(entries) != len(want) {
		t.Fatalf("Lookup(Add(x)) = %+v, want one owned entry for each of %v", entries, want)
	}
	for i, e := range entries {
		if !e.Owned || e.Addr != want[i] {
			t.Fatalf("Lookup(Add(x)) = %+v, want one owned entry for each of %v", entries, want)
		}
	}
	s := string(out)
	txh, err := txeh.NewHosts(&txeh.HostsConfig{RawText: &s})
	if err != nil {
		t.Fatal(err)
	}
	got := txh.ListAddressesByHost(canon, true)
	if len(got) != len(want) {
		t.Fatalf("txeh sees %q for %s in %q, want only %v", got, canon, out, want)
	}
	for i := range got {
		if got[i][0] != want[i].String() {
			t.Fatalf("txeh sees %q for %s in %q, want only %v", got, canon, out, want)
		}
	}
	checkForeignLines(t, in, out, canon)
	return out, true
}

// checkRemove checks Remove(in, h) as checkAdd checks Add; it also returns
// in itself (not a copy) when there is nothing to remove.
func checkRemove(t *testing.T, in []byte, h string) ([]byte, bool) {
	t.Helper()
	orig := bytes.Clone(in)
	out, err := Remove(in, h)
	if !bytes.Equal(in, orig) {
		t.Fatalf("Remove modified its input")
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidHost) && !errors.Is(err, ErrMalformedBlock) {
			t.Fatalf("Remove: unexpected error %v", err)
		}
		return nil, false
	}
	canon, _ := canonicalHost(h)
	if again, err := Remove(out, h); err != nil || !bytes.Equal(again, out) {
		t.Fatalf("Remove is not idempotent: %q, %v; want %q", again, err, out)
	}
	entries, err := Lookup(out, h)
	if err != nil {
		t.Fatalf("Lookup(Remove(x)): %v", err)
	}
	for _, e := range entries {
		if e.Owned {
			t.Fatalf("Lookup(Remove(x)) = %+v, want no owned entry", entries)
		}
	}
	checkForeignLines(t, in, out, canon)
	return out, true
}

// checkForeignLines fails unless every line of in outside host's blocks is
// in out, in order, with the same bytes, and out has no other line outside
// host's blocks. Only the last such line may gain or lose its terminator,
// as it must for the file to keep ending (or not) with one; an empty last
// line keeps it.
func checkForeignLines(t *testing.T, in, out []byte, host string) {
	t.Helper()
	endsOpen := func(b []byte) bool { return len(b) > 0 && b[len(b)-1] != '\n' }
	lastEmpty := func(b []byte) bool { l := splitLines(b); return len(l) > 0 && l[len(l)-1].text == "" }
	if endsOpen(in) != endsOpen(out) && len(out) > 0 && !lastEmpty(out) {
		t.Fatalf("final terminator changed: %q -> %q", in, out)
	}
	a, b := foreignLines(t, in, host), foreignLines(t, out, host)
	if len(a) != len(b) {
		t.Fatalf("%d foreign lines became %d: %q -> %q", len(a), len(b), in, out)
	}
	for i := range a {
		last := i == len(a)-1
		if a[i].text != b[i].text || (a[i].eol != b[i].eol && !(last && (a[i].eol == "" || b[i].eol == ""))) {
			t.Fatalf("foreign line %d changed: %q -> %q", i+1, a[i].text+a[i].eol, b[i].text+b[i].eol)
		}
	}
}

// foreignLines returns the lines of content outside host's blocks.
func foreignLines(t *testing.T, content []byte, host string) []line {
	t.Helper()
	p, err := parse(content)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	owned := p.ownedBy(p.blocksOf(host))
	var fl []line
	for i, l := range p.lines {
		if !owned[i] {
			fl = append(fl, l)
		}
	}
	return fl
}
