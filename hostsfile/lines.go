package hostsfile

import "strings"

// line is one line of a hosts file: its text and the terminator that ended
// it: "\n", "\r\n", or "" for a last line that has none.
type line struct {
	text string
	eol  string
}

// splitLines cuts content into lines. Joining them gives content back.
func splitLines(content []byte) []line {
	var lines []line
	s := string(content)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, line{text: s})
			break
		}
		l := line{text: s[:i], eol: "\n"}
		if strings.HasSuffix(l.text, "\r") {
			l.text, l.eol = l.text[:len(l.text)-1], "\r\n"
		}
		lines = append(lines, l)
		s = s[i+1:]
	}
	return lines
}

// joinLines is the inverse of splitLines.
func joinLines(lines []line) []byte {
	n := 0
	for _, l := range lines {
		n += len(l.text) + len(l.eol)
	}
	b := make([]byte, 0, n)
	for _, l := range lines {
		b = append(b, l.text...)
		b = append(b, l.eol...)
	}
	return b
}

// dominantEOL returns the line ending most lines use, "\n" on a tie or
// when no line has one. Lines whose text ends in a carriage return do not
// vote: see terminate.
func dominantEOL(lines []line) string {
	var lf, crlf int
	for _, l := range lines {
		if strings.HasSuffix(l.text, "\r") {
			continue
		}
		switch l.eol {
		case "\n":
			lf++
		case "\r\n":
			crlf++
		}
	}
	if crlf > lf {
		return "\r\n"
	}
	return "\n"
}

// terminate gives an unterminated line the terminator eol. A text ending in
// a carriage return followed by "\n" would read back as a shorter text with
// a CRLF, so such a line gets "\r\n" whatever eol is: it reads back as the
// same text.
func terminate(l line, eol string) line {
	if strings.HasSuffix(l.text, "\r") {
		eol = "\r\n"
	}
	l.eol = eol
	return l
}
