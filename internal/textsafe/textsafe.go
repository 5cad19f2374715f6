// Package textsafe keeps text from peers and users (a device's answers,
// client names, tags a registry lists) from steering a terminal: C0 and C1
// control characters (ESC starts CSI/OSC sequences such as ESC[2J, OSC 0
// and OSC 52; U+009B is CSI on its own), DEL, bidirectional overrides and
// isolates (U+202E renders text reversed), and line separators.
//
// Check refuses such text where a name is made (a clear error);
// Escape and Writer show it escaped where it is printed.
package textsafe

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Unsafe reports whether r must not reach a terminal raw. Newline and tab
// are unsafe too; Writer lets them through in output it formats itself.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, // Arabic letter mark, LRM, RLM
		r >= 0x202a && r <= 0x202e, // LRE, RLE, PDF, LRO, RLO
		r >= 0x2066 && r <= 0x2069, // LRI, RLI, FSI, PDI
		r == 0x2028, r == 0x2029,   // line and paragraph separators
		r == 0xfeff: // zero-width no-break space (BOM)
		return true
	}
	return false
}

// Check returns an error naming the first character of s that Unsafe
// refuses, or invalid UTF-8; what names s is for the message, e.g.
// "client name".
func Check(what, s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return fmt.Errorf("invalid %s: not UTF-8 at byte %d", what, i)
			}
		}
		if Unsafe(r) {
			return fmt.Errorf("invalid %s \"%s\": control or bidirectional character U+%04X at byte %d", what, Escape(s), r, i)
		}
	}
	return nil
}

// Escape returns s with every unsafe character (and every byte that is not
// UTF-8) written as an escape: \x1b for C0, \u007f for DEL, \u009b for C1 and
// the other unsafe runes (so that escaped JSON stays valid JSON), \xff for
// invalid bytes.
func Escape(s string) string {
	if !needsEscape(s, false) {
		return s
	}
	var b strings.Builder
	appendEscaped(&b, s, false)
	return b.String()
}

func needsEscape(s string, keepLayout bool) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return true
			}
		}
		if Unsafe(r) && !(keepLayout && (r == '\n' || r == '\t')) {
			return true
		}
	}
	return false
}

func appendEscaped(b *strings.Builder, s string, keepLayout bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case keepLayout && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case Unsafe(r) && r < 0x20:
			fmt.Fprintf(b, `\x%02x`, r)
		case Unsafe(r):
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

// Writer escapes, as Escape does, everything written through it except
// newlines and tabs: a command's output streams, so that nothing a peer
// said reaches the terminal raw whichever path prints it. A character
// split across writes is held until the next one.
type Writer struct {
	w       io.Writer
	mu      sync.Mutex // a server's log lines come from many goroutines
	pending []byte
}

// NewWriter returns w wrapped in a Writer (w itself if it is one).
func NewWriter(w io.Writer) io.Writer {
	if _, ok := w.(*Writer); ok || w == nil {
		return w
	}
	return &Writer{w: w}
}

// Unwrap returns the underlying writer: for a terminal check, or for output
// the command draws itself (a progress bar's carriage returns).
func (w *Writer) Unwrap() io.Writer { return w.w }

// Raw returns the writer under any Writer wrapping w.
func Raw(w io.Writer) io.Writer {
	if sw, ok := w.(*Writer); ok {
		return sw.w
	}
	return w
}

// Write implements io.Writer; it reports len(p) written when the escaped
// text was.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.pending, p...)
	w.pending = nil
	// Hold back a trailing incomplete (but so far valid) UTF-8 sequence.
	if k := incompleteTail(buf); k > 0 {
		w.pending = append([]byte(nil), buf[len(buf)-k:]...)
		buf = buf[:len(buf)-k]
	}
	s := string(buf)
	if !needsEscape(s, true) {
		if _, err := io.WriteString(w.w, s); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	var b strings.Builder
	appendEscaped(&b, s, true)
	if _, err := io.WriteString(w.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// incompleteTail returns how many bytes at the end of b start a UTF-8
// sequence that is not complete yet.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // a lead byte
			need := 2
			switch {
			case c >= 0xf0:
				need = 4
			case c >= 0xe0:
				need = 3
			}
			if need > k && !utf8.FullRune(b[len(b)-k:]) {
				return k
			}
			return 0
		}
	}
	return 0
}
