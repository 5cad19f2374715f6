package credhelper

import (
	"strings"
	"testing"
)

func TestNormalizeServerURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"ecr.dev1.example:31001", "ecr.dev1.example:31001"},
		{"https://ecr.dev1.example:31001", "ecr.dev1.example:31001"},
		{"http://ecr.dev1.example:31001", "ecr.dev1.example:31001"},
		{"https://ecr.dev1.example:31001/", "ecr.dev1.example:31001"},
		{"https://ecr.dev1.example:31001/v2/", "ecr.dev1.example:31001"},
		{"ecr.dev1.example:31001/library/alpine", "ecr.dev1.example:31001"},
		{"ecr.dev1.example:31001/a/b/c", "ecr.dev1.example:31001"},
		{"  ecr.dev1.example:31001\n", "ecr.dev1.example:31001"},
		{"ECR.Dev1.Example:31001", "ecr.dev1.example:31001"},
		{"https://user:pw@ecr.dev1.example:31001/x", "ecr.dev1.example:31001"},
		{"https://index.docker.io/v1/", "index.docker.io"},
		{"[fd00::1]:31001/repo", "[fd00::1]:31001"},
		{"198.18.0.2:31001", "198.18.0.2:31001"},
		{"ecr.dev1.example:31001?x=1", "ecr.dev1.example:31001"},
	}
	for _, tt := range tests {
		got, err := normalizeServerURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normalizeServerURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeServerURLRejects(t *testing.T) {
	for _, in := range []string{"", "  ", "https://", "/repo", ":31001", "host:", "ho st:1", "https://user:hunter2@/x", "h%41st:1"} {
		got, err := normalizeServerURL(in)
		if err == nil {
			t.Errorf("normalizeServerURL(%q) = %q, want an error", in, got)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error for %q quotes the password: %v", in, err)
		}
	}
}
