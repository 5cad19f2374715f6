package hostsfile

import (
	"fmt"
	"net/netip"
	"slices"
)

// Add returns content with a block that maps host to ip.
//
// If host already has a block, the block is rewritten in place (so a new IP
// replaces the old one, and adding the same IP again returns content
// unchanged); any further block of the same host is dropped. Otherwise the
// block is appended at the end. Host names are written in lower case.
//
// Add refuses, changing nothing, when a line outside the host's block maps
// the host name, whatever its address ([ErrHostOwnedByUser], as a
// *[ConflictError]), when the markers do not pair up ([ErrMalformedBlock]),
// and when host or ip is invalid ([ErrInvalidHost], [ErrInvalidIP]).
func Add(content []byte, ip netip.Addr, host string) ([]byte, error) {
	return AddAll(content, []netip.Addr{ip}, host)
}

// AddAll is Add with several addresses: the block holds one line per
// address, in the order given (duplicates dropped), which is the order a
// resolver returns them in and a client such as Docker or containerd dials
// them (Go's net.Dialer tries the next when one refuses or times out). A
// block with one address is exactly Add's. It refuses an empty list
// ([ErrInvalidIP]).
func AddAll(content []byte, ips []netip.Addr, host string) ([]byte, error) {
	host, err := canonicalHost(host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%w: no address given", ErrInvalidIP)
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		a, err := entryAddr(ip)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	p, err := parse(content)
	if err != nil {
		return nil, err
	}
	entries, err := p.entries(content, host)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Owned {
			return nil, &ConflictError{Host: host, Line: e.Line, Text: e.Text}
		}
	}
	mine := p.blocksOf(host)
	eol := p.eol(mine)
	return p.rewrite(mine, renderBlock(addrs, host, eol), eol), nil
}
