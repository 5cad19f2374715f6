package hostsfile

import (
	"bytes"
	"strings"
	"testing"
)

// roundTripInputs are files Add then Remove must give back byte for byte.
var roundTripInputs = map[string]string{
	"empty":                          "",
	"one newline":                    "\n",
	"one line without newline":       "127.0.0.1 localhost",
	"two lines without newline":      "127.0.0.1 localhost\n::1 localhost",
	"typical":                        userHosts,
	"CRLF":                           strings.ReplaceAll(userHosts, "\n", "\r\n"),
	"CRLF without newline":           "127.0.0.1 localhost\r\n::1 localhost",
	"mixed endings":                  "a\r\nb\nc\r\n",
	"lone CR":                        "\r",
	"last line ends in CR":           "a\nb\r",
	"only blank lines":               "\n\n  \n\t\n",
	"trailing spaces, no newline":    "127.0.0.1 localhost   \t",
	"BOM":                            "\ufeff127.0.0.1 localhost\r\n",
	"other device's block":           userHosts + blk("192.0.2.99", "ecr.other.lan", "\n"),
	"other device's block, no EOL":   userHosts + strings.TrimSuffix(blk("192.0.2.99", "ecr.other.lan", "\n"), "\n"),
	"Windows default":                "# Copyright (c) 1993-2009 Microsoft Corp.\r\n#\r\n#\t127.0.0.1       localhost\r\n#\t::1             localhost\r\n",
	"NUL and other bytes":            "1.2.3.4 a\x00b\n\xff\xfe\n",
	"user comment that looks edgecr": "# BEGIN edgecr of my own words\n",
}

func TestAddRemoveRoundTrip(t *testing.T) {
	for name, in := range roundTripInputs {
		t.Run(name, func(t *testing.T) {
			added, err := Add([]byte(in), ip1, host)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if string(added) == in {
				t.Fatalf("Add changed nothing")
			}
			got, err := Remove(added, host)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if string(got) != in {
				t.Errorf("Remove(Add(x)) = %q, want %q (Add gave %q)", got, in, added)
			}
		})
	}
}

func TestRemoveAbsentIsUnchanged(t *testing.T) {
	for name, in := range roundTripInputs {
		t.Run(name, func(t *testing.T) {
			got, err := Remove([]byte(in), host)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if !bytes.Equal(got, []byte(in)) {
				t.Errorf("Remove = %q, want the input %q", got, in)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	other := blk("192.0.2.20", "ecr.other.lan", "\n")
	mine := blk("192.0.2.10", host, "\n")
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"first of two devices", userHosts + mine + other, userHosts + other},
		{"second of two devices", userHosts + other + mine, userHosts + other},
		{"block in the middle", "a\n" + mine + "b\n", "a\nb\n"},
		{"block at the end without newline", "a\n" + strings.TrimSuffix(mine, "\n"), "a"},
		{"block in the middle of a file without newline", "a\n" + mine + "b", "a\nb"},
		{"an empty line left last keeps its terminator", "a\n\n" + strings.TrimSuffix(mine, "\n"), "a\n\n"},
		{"an empty line alone", "\n" + strings.TrimSuffix(mine, "\n"), "\n"},
		{"whole file", mine, ""},
		{"whole file without newline", strings.TrimSuffix(mine, "\n"), ""},
		{"duplicate blocks", mine + "a\n" + mine, "a\n"},
		{"lines a user put inside the block go with it", "# BEGIN edgecr " + host + "\nx y\n# END edgecr " + host + "\n", ""},
		{"upper-case host", "# BEGIN edgecr ECR.device.lan\n# END edgecr ECR.device.lan\n", ""},
		{"a user's own line for the host stays", "192.0.2.10 " + host + "\n" + mine, "192.0.2.10 " + host + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Remove([]byte(tt.in), host)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Remove(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAddThenRemoveSeveralDevices(t *testing.T) {
	for name, in := range roundTripInputs {
		t.Run(name, func(t *testing.T) {
			b := []byte(in)
			hosts := []string{"a.lan", "b.lan", "c.lan"}
			var err error
			for _, h := range hosts {
				if b, err = Add(b, ip1, h); err != nil {
					t.Fatalf("Add %s: %v", h, err)
				}
			}
			for _, h := range []string{"b.lan", "a.lan", "c.lan"} { // not in the order they came
				if b, err = Remove(b, h); err != nil {
					t.Fatalf("Remove %s: %v", h, err)
				}
			}
			if string(b) != in {
				t.Errorf("got %q, want %q", b, in)
			}
		})
	}
}
