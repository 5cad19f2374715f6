package testenv

import (
	"bytes"
	"os"
	"strconv"
	"testing"
)

func TestAppendFlag(t *testing.T) {
	for in, want := range map[string]bool{
		"pos:\t0\nflags:\t0102001\nmnt_id:\t30\n":   true,  // >>: O_APPEND|O_LARGEFILE|O_WRONLY
		"pos:\t120\nflags:\t0100001\nmnt_id:\t30\n": false, // >
		"flags:\tnot-octal\n":                       false,
		"":                                          false,
	} {
		if got := appendFlag([]byte(in)); got != want {
			t.Errorf("appendFlag(%q) = %v, want %v", in, got, want)
		}
	}
	// This process's own stdout and a file it opens for appending.
	f, err := os.OpenFile(t.TempDir()+"/log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !appending("/proc/self/fdinfo/" + strconv.Itoa(int(f.Fd()))) {
		t.Error("a file opened with O_APPEND does not read as appending")
	}
}

func FuzzAppendFlag(f *testing.F) {
	f.Add([]byte("pos:\t0\nflags:\t0102001\n"))
	f.Add([]byte("flags:\t07777777777777777777777777\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := appendFlag(b)
		if got && !bytes.Contains(b, []byte("flags:")) {
			t.Fatalf("appending without a flags line: %q", b)
		}
	})
}
