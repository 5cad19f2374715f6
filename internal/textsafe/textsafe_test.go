package textsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// The sequences of the review: clear screen (CSI 2J), set the window title
// (OSC 0), write the clipboard (OSC 52), 8-bit CSI, a right-to-left override.
var hostile = []struct{ name, in, want string }{
	{"CSI 2J", "a\x1b[2Jb", `a\x1b[2Jb`},
	{"OSC 0", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
	{"OSC 52", "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x1b\\", `\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x1b\`},
	{"C1 CSI", "x\u009b2Jy", `x\u009b2Jy`},
	{"RLO", "laptop\u202egnp.exe", `laptop\u202egnp.exe`},
	{"isolates", "\u2066a\u2069", `\u2066a\u2069`},
	{"DEL and NUL", "a\x7fb\x00", `a\u007fb\x00`},
	{"invalid UTF-8", "a\xffb", `a\xffb`},
	{"plain", "build-laptop ünïcode 日本", "build-laptop ünïcode 日本"},
}

func TestEscape(t *testing.T) {
	for _, c := range hostile {
		if got := Escape(c.in); got != c.want {
			t.Errorf("%s: Escape(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
	if got := Escape("a\nb\tc\r"); got != `a\x0ab\x09c\x0d` {
		t.Errorf("Escape keeps layout characters: %q", got)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range hostile {
		err := Check("client name", c.in)
		if (err == nil) != (c.name == "plain") {
			t.Errorf("%s: Check(%q) = %v", c.name, c.in, err)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\x1b\x07\u009b\u202e") {
			t.Errorf("%s: the error carries the raw character: %q", c.name, err)
		}
	}
}

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	if NewWriter(w) != w {
		t.Error("NewWriter wraps a Writer twice")
	}
	in := "ok\tline\n" + hostile[0].in + hostile[1].in + "\n"
	if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if want := "ok\tline\n" + hostile[0].want + hostile[1].want + "\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	// A rune split across writes, and U+202E split too.
	out.Reset()
	s := "日\u202e本"
	for i := 0; i < len(s); i++ {
		w.Write([]byte{s[i]})
	}
	if out.String() != `日\u202e本` {
		t.Errorf("split writes: %q", out.String())
	}
	// JSON stays JSON, with the same meaning.
	out.Reset()
	v := map[string]string{"name": "a\u009b\u202e\x1b[2J"}
	json.NewEncoder(w).Encode(v)
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["name"] != v["name"] {
		t.Errorf("escaped JSON %s: %v, %q", out.Bytes(), err, back)
	}
	if strings.ContainsAny(out.String(), "\u009b\u202e\x1b") {
		t.Errorf("JSON carries raw characters: %q", out.String())
	}
}

func FuzzWriter(f *testing.F) {
	for _, c := range hostile {
		f.Add(c.in, 3)
	}
	f.Fuzz(func(t *testing.T, s string, split int) {
		var out bytes.Buffer
		w := NewWriter(&out)
		if split <= 0 {
			split = 1
		}
		for i := 0; i < len(s); i += split {
			w.Write([]byte(s[i:min(i+split, len(s))]))
		}
		w.Write([]byte("\n")) // flushes a held tail
		got := out.String()
		for i, r := range got {
			if r == utf8.RuneError {
				if _, n := utf8.DecodeRuneInString(got[i:]); n == 1 {
					t.Fatalf("invalid UTF-8 in output %q", got)
				}
			}
			if Unsafe(r) && r != '\n' && r != '\t' {
				t.Fatalf("unsafe %U in output %q of %q", r, got, s)
			}
		}
		if Check("x", Escape(s)) != nil {
			t.Fatalf("Escape(%q) = %q is not safe", s, Escape(s))
		}
	})
}

// encoding/json writes DEL as it is: the Writer's escape of it must stay
// valid JSON that decodes to the same text (a \x7f escape did not).
func TestWriterKeepsJSONWithDELValid(t *testing.T) {
	in, err := json.Marshal(map[string]string{"name": "a\x7fb\u202ec\u0085"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if _, err := NewWriter(&b).Write(in); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(b.String()), &out); err != nil {
		t.Fatalf("escaped JSON %s does not parse: %v", b.String(), err)
	}
	if out["name"] != "a\x7fb\u202ec\u0085" {
		t.Fatalf("escaped JSON decodes to %q", out["name"])
	}
}
