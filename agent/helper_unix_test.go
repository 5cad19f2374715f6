//go:build unix

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ExecHelper speaks the credential helper protocol with a real process: a
// shell script standing in for docker-credential-edgecr.
func TestExecHelper(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, HelperCommand)
	os.WriteFile(script, []byte(`#!/bin/sh
read url
case "$1:$url" in
get:ecr.box.internal:31001) printf '{"ServerURL":"%s","Username":"c-1","Secret":"pa55"}\n' "$url" ;;
get:*) echo "credentials not found in native keychain"; exit 1 ;;
esac
`), 0o755)
	h := &ExecHelper{LookPath: func(name string) (string, error) { return filepath.Join(dir, name), nil }, Env: []string{"PATH=/usr/bin:/bin"}}
	path, err := h.Find()
	if err != nil || path != script {
		t.Fatalf("Find = %q, %v", path, err)
	}
	u, p, err := h.Get(context.Background(), path, "ecr.box.internal:31001")
	if err != nil || u != "c-1" || p.reveal() != "pa55" {
		t.Errorf("Get = %q, %q, %v", u, p.reveal(), err)
	}
	_, _, err = h.Get(context.Background(), path, "other:1")
	if err == nil || !strings.Contains(err.Error(), "credentials not found in native keychain") {
		t.Errorf("Get of an unknown registry = %v", err)
	}
}
