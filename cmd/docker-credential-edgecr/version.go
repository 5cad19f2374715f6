package main

import "runtime/debug"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// buildVersion is version, or else the module version the go command
// stamped into the binary (go install …@v1.2.3, or a VCS pseudo-version).
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
