package hostsfile

import (
	"fmt"
	"net/netip"
	"strings"
)

// canonicalHost checks that host is an RFC 1123 host name and returns it in
// lower case. Only letters, digits, '-' and '.' pass, so a valid name cannot
// carry a line break, a '#' or white space into the file. A name whose last
// label is all digits is refused too: it would read as an IPv4 address.
func canonicalHost(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	if len(host) > 253 {
		return "", fmt.Errorf("%w %.20q...: longer than 253 characters", ErrInvalidHost, host)
	}
	labels := strings.Split(host, ".")
	for _, label := range labels {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("%w %q: %w", ErrInvalidHost, host, err)
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", fmt.Errorf("%w %q: last label is all digits", ErrInvalidHost, host)
	}
	return strings.ToLower(host), nil
}

// checkLabel checks one dot-separated label of a host name.
func checkLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("empty label")
	case len(label) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with '-'", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("label %q contains %q", label, c)
		}
	}
	return nil
}

// entryAddr checks that ip can be the address of a hosts entry and returns
// it as it will be written: an IPv4-mapped IPv6 address (what a 16-byte
// net.IP converts to) is written as the IPv4 address it carries.
func entryAddr(ip netip.Addr) (netip.Addr, error) {
	switch {
	case !ip.IsValid():
		return netip.Addr{}, fmt.Errorf("%w: no address given", ErrInvalidIP)
	case ip.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%w %s: hosts files cannot hold a zone", ErrInvalidIP, ip)
	case ip.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("%w %s: unspecified address", ErrInvalidIP, ip)
	}
	return ip.Unmap(), nil
}
