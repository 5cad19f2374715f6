package hostsfile

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLookup(t *testing.T) {
	in := "127.0.0.1 localhost\r\n" +
		"10.9.9.9 nas ECR.device.lan # user's\r\n" +
		"#10.8.8.8 " + host + "\r\n" +
		"# BEGIN edgecr " + host + "\r\n" +
		"192.0.2.10 " + host + "\r\n" +
		"# END edgecr " + host + "\r\n" +
		"bogus " + host
	got, err := Lookup([]byte(in), "Ecr.Device.Lan")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Line: 2, Addr: netip.MustParseAddr("10.9.9.9"), Text: "10.9.9.9 nas ECR.device.lan # user's"},
		{Line: 5, Addr: netip.MustParseAddr("192.0.2.10"), Text: "192.0.2.10 " + host, Owned: true},
		{Line: 7, Text: "bogus " + host},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
}

func TestLookupAfterAdd(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"typical", userHosts},
		{"other device", blk("192.0.2.99", "ecr.other.lan", "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Add([]byte(tt.in), ip2, host)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Lookup(b, host)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !got[0].Owned || got[0].Addr != ip2 {
				t.Errorf("Lookup = %+v, want one owned entry for %v", got, ip2)
			}
			if got, _ := Lookup([]byte(tt.in), host); len(got) != 0 {
				t.Errorf("Lookup before Add = %+v, want none", got)
			}
		})
	}
}
