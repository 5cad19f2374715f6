package hostsfile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/txn2/txeh"
)

// Entry is a line of a hosts file that maps a host name.
type Entry struct {
	Line  int        // 1-based line number
	Addr  netip.Addr // the line's address; the zero Addr if it does not parse
	Text  string     // the line, without its line terminator
	Owned bool       // the line is inside edgecr's block for the host
}

// Lookup returns the lines of content that map host, in file order (a
// resolver that stops at the first match uses the first). A line counts when it is not a
// comment, has an address field and names host, case-insensitively, among
// its names; the text after a '#' is a comment.
//
// For `edgecr status`: one owned entry with the device's IP is the healthy
// state; an entry that is not owned is the user's own line.
func Lookup(content []byte, host string) ([]Entry, error) {
	host, err := canonicalHost(host)
	if err != nil {
		return nil, err
	}
	p, err := parse(content)
	if err != nil {
		return nil, err
	}
	return p.entries(content, host)
}

// entries finds the lines that map the canonical host name host. txeh's
// parser classifies the lines; it cuts lines exactly like splitLines (its
// line i is our line i), which is checked rather than assumed.
func (p *parsed) entries(content []byte, host string) ([]Entry, error) {
	hfl, err := txeh.ParseHostsFromString(string(content))
	if err != nil {
		return nil, fmt.Errorf("parsing hosts lines: %w", err)
	}
	if len(hfl) != len(p.lines) {
		return nil, fmt.Errorf("parsing hosts lines: txeh sees %d lines, edgecr %d", len(hfl), len(p.lines))
	}
	owned := p.ownedBy(p.blocksOf(host))
	var entries []Entry
	for i, l := range hfl {
		if l.LineType != txeh.ADDRESS || !slices.ContainsFunc(l.Hostnames, func(n string) bool { return sameHost(n, host) }) {
			continue
		}
		addr, _ := netip.ParseAddr(l.Parts[0]) // a bad address still claims the name: see Add
		entries = append(entries, Entry{Line: i + 1, Addr: addr, Text: p.lines[i].text, Owned: owned[i]})
	}
	return entries, nil
}
