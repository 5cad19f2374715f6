package hostsfile

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden with the current output")

// TestGolden runs Add on testdata/golden/<name>.in and compares the result
// with <name>.golden. Run with -update to accept new output.
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		host string
		ip   string
	}{
		{"empty", host, "192.0.2.10"},
		{"linux", host, "192.0.2.10"},
		{"macos-no-final-newline", host, "192.0.2.10"},
		{"windows-crlf", host, "192.0.2.10"},
		{"new-ip", host, "192.0.2.77"},
		{"second-device", "ecr.lab.lan", "2001:db8::10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := filepath.Join("testdata", "golden", tt.name+".in")
			golden := filepath.Join("testdata", "golden", tt.name+".golden")
			content, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Add(content, netip.MustParseAddr(tt.ip), tt.host)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("Add(%s) differs from %s:\n got %q\nwant %q", in, golden, got, want)
			}
			back, err := Remove(got, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := Remove(content, tt.host); string(back) != string(want) {
				t.Errorf("Remove(golden) = %q; want %q", back, want)
			}
		})
	}
}
