package agent

import (
	"strings"
	"testing"
)

func TestCheckOwnName(t *testing.T) {
	for name, ok := range map[string]bool{
		"ecr.box1.internal": true, "box1.internal": true, "ecr.box.corp.example.com": true,
		"internal": false, "com": false, "co.uk": false, "github.io": false, "localhost": false,
		"docker.io": false, "registry-1.docker.io": false, "io": false, "ghcr.io": false,
		"x.s3.amazonaws.com": false, "mcr.microsoft.com": false, "quay.io": false, "gcr.io": false,
		"bad host": false, "": false, "ecr..box.internal": false, "10.0.0.1": false,
	} {
		if err := CheckOwnName(name); (err == nil) != ok {
			t.Errorf("CheckOwnName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func FuzzCheckOwnName(f *testing.F) {
	for _, s := range []string{"ecr.box.internal", "docker.io", "a\x1b[2J.internal", "x.github.io"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckOwnName(s) == nil && strings.ContainsAny(s, " \t\n\x1b\u202e/#") {
			t.Fatalf("CheckOwnName accepts %q", s)
		}
	})
}
