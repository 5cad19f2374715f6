package hostsfile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in   string
		want []line
	}{
		{"", nil},
		{"\n", []line{{"", "\n"}}},
		{"a", []line{{"a", ""}}},
		{"a\nb", []line{{"a", "\n"}, {"b", ""}}},
		{"a\r\nb\r\n", []line{{"a", "\r\n"}, {"b", "\r\n"}}},
		{"a\r\r\n\r", []line{{"a\r", "\r\n"}, {"\r", ""}}},
		{" \t# c \n\n", []line{{" \t# c ", "\n"}, {"", "\n"}}},
	}
	for _, tt := range tests {
		got := splitLines([]byte(tt.in))
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(line{})); diff != "" {
			t.Errorf("splitLines(%q) (-want +got):\n%s", tt.in, diff)
		}
		if back := string(joinLines(got)); back != tt.in {
			t.Errorf("joinLines(splitLines(%q)) = %q", tt.in, back)
		}
	}
}

func TestDominantEOL(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "\n"},
		{"a", "\n"},
		{"a\n", "\n"},
		{"a\r\n", "\r\n"},
		{"a\r\nb\n", "\n"}, // a tie is LF
		{"a\r\nb\r\nc\n", "\r\n"},
		{"a\r\r\nb\n", "\n"}, // a line ending in CR does not vote
	}
	for _, tt := range tests {
		if got := dominantEOL(splitLines([]byte(tt.in))); got != tt.want {
			t.Errorf("dominantEOL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
