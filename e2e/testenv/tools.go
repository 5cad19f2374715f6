package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Pinned referrers clients; .ci/build-referrer-tools builds them (keep the
// two in step).
const (
	OrasVersion   = "v1.3.6"
	CosignVersion = "v2.6.5"
)

// ToolPath is where the tools cache keeps name at version: $env if set,
// else ${XDG_CACHE_HOME:-$HOME/.cache}/edgecr-tools/<name>-<version>.
func ToolPath(env, name, version string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "edgecr-tools", name+"-"+version)
}

// NeedTool needs the tools-cache binary name at version ($env overrides
// its path) and returns its path. It skips (fails in CI) when the binary
// is missing, with the command that builds it.
func NeedTool(t testing.TB, env, name, version, why string) string {
	t.Helper()
	p := ToolPath(env, name, version)
	fi, err := os.Stat(p)
	Need(t, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0,
		name+" "+version+" not built: "+why+" (bash .ci/build-referrer-tools builds it into "+p+", or set "+env+")")
	return p
}
