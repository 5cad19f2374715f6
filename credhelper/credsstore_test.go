package credhelper

import (
	"errors"
	"testing"
)

func fakeLookPath(found ...string) func(string) (string, error) {
	return func(name string) (string, error) {
		for _, f := range found {
			if f == name {
				return "/fake/bin/" + name, nil
			}
		}
		return "", errors.New("not found")
	}
}

func TestDefaultCredsStore(t *testing.T) {
	tests := []struct {
		goos  string
		found []string
		want  string
	}{
		{"darwin", []string{"docker-credential-osxkeychain"}, "osxkeychain"},
		{"darwin", nil, ""},
		{"windows", []string{"docker-credential-wincred"}, "wincred"},
		{"windows", nil, ""},
		{"linux", []string{"pass", "docker-credential-pass", "docker-credential-secretservice"}, "pass"},
		{"linux", []string{"docker-credential-secretservice"}, "secretservice"},
		// Docker picks pass as soon as pass is on PATH, and then finds no helper.
		{"linux", []string{"pass", "docker-credential-secretservice"}, ""},
		{"linux", []string{"docker-credential-pass"}, ""},
		{"linux", nil, ""},
		{"freebsd", []string{"pass", "docker-credential-pass"}, ""},
	}
	for _, tt := range tests {
		if got := DefaultCredsStore(tt.goos, fakeLookPath(tt.found...)); got != tt.want {
			t.Errorf("DefaultCredsStore(%q, %v) = %q, want %q", tt.goos, tt.found, got, tt.want)
		}
	}
}
