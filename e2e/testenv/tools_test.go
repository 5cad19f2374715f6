package testenv_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// ToolPath is the tools cache's <name>-<version> under XDG_CACHE_HOME,
// unless the env var names another build.
func TestToolPath(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("EDGECR_ORAS", "")
	want := filepath.Join(cache, "edgecr-tools", "oras-"+testenv.OrasVersion)
	if got := testenv.ToolPath("EDGECR_ORAS", "oras", testenv.OrasVersion); got != want {
		t.Errorf("ToolPath = %s, want %s", got, want)
	}
	t.Setenv("EDGECR_ORAS", "/elsewhere/oras")
	if got := testenv.ToolPath("EDGECR_ORAS", "oras", testenv.OrasVersion); got != "/elsewhere/oras" {
		t.Errorf("ToolPath with EDGECR_ORAS set = %s, want /elsewhere/oras", got)
	}
}

// NeedTool returns a built tool's path, and skips, naming the build
// script, when the tool is missing or not executable.
func TestNeedTool(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the executable bit is a Unix notion")
	}
	t.Setenv("EDGECR_NO_SKIP", "")
	t.Setenv("EDGECR_TESTENV_TOOL", "")
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	p := filepath.Join(cache, "edgecr-tools", "demo-v1")
	os.MkdirAll(filepath.Dir(p), 0o755)

	var skipped bool
	var msg string
	check := func() {
		t.Run("need", func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			msg = ""
			got := testenv.NeedTool(t, "EDGECR_TESTENV_TOOL", "demo", "v1", "a demo")
			msg = got
		})
	}
	check()
	if !skipped {
		t.Fatalf("NeedTool of a missing tool did not skip (returned %q)", msg)
	}
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644)
	check()
	if !skipped {
		t.Fatal("NeedTool of a tool that is not executable did not skip")
	}
	os.Chmod(p, 0o755)
	check()
	if skipped || msg != p {
		t.Fatalf("NeedTool of a built tool: skipped %v, returned %q, want %s", skipped, msg, p)
	}
}
