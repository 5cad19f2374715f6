package hostsfile

import (
	"fmt"
	"net/netip"
	"strings"
)

// markerTag follows "# BEGIN" and "# END" in the marker lines.
const markerTag = "edgecr"

// renderBlock returns the lines of host's block, each ended by eol: one
// address line per ip, in order.
func renderBlock(ips []netip.Addr, host, eol string) []line {
	out := []line{{text: "# BEGIN " + markerTag + " " + host, eol: eol}}
	for _, ip := range ips {
		out = append(out, line{text: ip.String() + " " + host, eol: eol})
	}
	return append(out, line{text: "# END " + markerTag + " " + host, eol: eol})
}

// block locates one edgecr block: lines[begin] is its BEGIN marker and
// lines[end] its END marker.
type block struct {
	host       string // as written in the markers
	begin, end int
}

// parseMarker reports whether text is a BEGIN or END marker line and for
// which host. It tolerates re-spacing (an editor or another tool may have
// turned a space into a tab), not other words.
func parseMarker(text string) (kind, host string, ok bool) {
	f := strings.Fields(text)
	if len(f) != 4 || f[0] != "#" || f[2] != markerTag || (f[1] != "BEGIN" && f[1] != "END") {
		return "", "", false
	}
	return f[1], f[3], true
}

// findBlocks returns every edgecr block in lines, in order. The markers of
// all hosts must pair up, BEGIN then END of the same host with no other
// marker in between: otherwise edgecr cannot tell which lines are its own.
func findBlocks(lines []line) ([]block, error) {
	var blocks []block
	open := -1 // index in blocks of the block whose END is pending
	for i, l := range lines {
		kind, host, ok := parseMarker(l.text)
		if !ok {
			continue
		}
		switch {
		case kind == "BEGIN" && open >= 0:
			b := blocks[open]
			return nil, fmt.Errorf("%w: line %d %q begins a block inside the block of %s begun at line %d",
				ErrMalformedBlock, i+1, l.text, b.host, b.begin+1)
		case kind == "BEGIN":
			blocks = append(blocks, block{host: host, begin: i})
			open = len(blocks) - 1
		case open < 0:
			return nil, fmt.Errorf("%w: line %d %q ends a block that was never begun",
				ErrMalformedBlock, i+1, l.text)
		case !sameHost(host, strings.ToLower(blocks[open].host)):
			b := blocks[open]
			return nil, fmt.Errorf("%w: line %d %q ends the block of %s begun at line %d",
				ErrMalformedBlock, i+1, l.text, b.host, b.begin+1)
		default:
			blocks[open].end = i
			open = -1
		}
	}
	if open >= 0 {
		b := blocks[open]
		return nil, fmt.Errorf("%w: the block of %s begun at line %d has no %q line",
			ErrMalformedBlock, b.host, b.begin+1, "# END "+markerTag+" "+b.host)
	}
	return blocks, nil
}

// sameHost compares a name found in the file with a canonical host name.
// Names are case-insensitive (hosts(5)); strings.ToLower also folds a few
// non-ASCII letters into ASCII ones (the Kelvin sign into k), which can
// only make edgecr more careful, never take over a line it should not.
func sameHost(name, canonical string) bool {
	return strings.ToLower(name) == canonical
}
