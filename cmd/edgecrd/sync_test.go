package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad sync configuration stops serve and sync run before anything
// starts, naming the file and the line; --sync-rate is checked too.
func TestSyncConfigRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sync.yaml")
	os.WriteFile(cfg, []byte("upstreams:\n  - name: up\n    url: https://127.0.0.1:1\nrules:\n  - name: r\n    upstream: up\n    repositories: [a]\n    schedule: hourly\n"), 0o600)
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{
		{"serve", "--data-dir", data, "--listen", "127.0.0.1:39981", "--ui-listen", "off", "--name", "t", "--ip", "127.0.0.1", "--sync-config", cfg},
		{"sync", "run", "--data-dir", data, "--sync-config", cfg},
	} {
		code, out, errOut := edgecrd(t, args...)
		if code == 0 || !strings.Contains(errOut, cfg) || !strings.Contains(errOut, `line 8: rule "r": unknown schedule "hourly"`) {
			t.Errorf("edgecrd %s: exit %d, stdout %q, stderr %q; want a refusal naming the file and line 8", args[0], code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "registry")); err == nil {
		t.Error("serve created the registry before refusing the configuration")
	}
	code, _, errOut := edgecrd(t, "sync", "run", "--data-dir", data, "--sync-config", cfg, "--sync-rate", "fast")
	if code == 0 || !strings.Contains(errOut, "--sync-rate") {
		t.Errorf("bad --sync-rate: exit %d, %q", code, errOut)
	}
}
