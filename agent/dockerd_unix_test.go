//go:build unix

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignalDockerdChecksTheProcess: a pid file naming a process that is
// not dockerd (a stale file) is refused before any signal is sent.
func TestSignalDockerdChecksTheProcess(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "docker.pid")
	proc := filepath.Join(dir, "proc")
	os.MkdirAll(filepath.Join(proc, "4242"), 0o755)
	os.WriteFile(filepath.Join(proc, "4242", "comm"), []byte("sshd\n"), 0o644)
	for content, want := range map[string]string{
		"4242\n": `is "sshd", not dockerd`,
		"x":      "is not a pid",
		"1":      "is not a pid",
		"4243":   "checking process 4243",
	} {
		os.WriteFile(pidFile, []byte(content), 0o644)
		if _, err := signalDockerd(pidFile, proc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pid file %q: %v, want %q", content, err, want)
		}
	}
}
