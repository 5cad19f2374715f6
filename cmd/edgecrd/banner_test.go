package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The start banner's `edgecrd info` works as printed when edgecrd is
// installed; started with go run, it also says how to run it from the
// source and where installing is explained.
func TestCredentialsLine(t *testing.T) {
	found := func(string) (string, error) { return "/usr/local/bin/edgecrd", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	if got := credentialsLine("--data-dir ./edgecrd-data", found); got != "Credentials:       edgecrd info --data-dir ./edgecrd-data\n" {
		t.Errorf("installed: %q", got)
	}
	got := credentialsLine("--data-dir ./edgecrd-data", missing)
	for _, w := range []string{"edgecrd info --data-dir ./edgecrd-data\n", "edgecrd is not on PATH", "go run ./cmd/edgecrd info --data-dir ./edgecrd-data", "README.md says how to install"} {
		if !strings.Contains(got, w) {
			t.Errorf("not installed: %q lacks %q", got, w)
		}
	}
}
