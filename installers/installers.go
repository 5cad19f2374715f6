// Package installers holds what the device serves to a client that has
// nothing installed yet: install.sh (Linux, macOS) and install.ps1
// (Windows), which download the agent over a pinned connection, check it
// against the device's SHA256SUMS, install it and run `edgecr join`.
package installers

import "embed"

// Scripts holds install.sh and install.ps1.
//
//go:embed install.sh install.ps1
var Scripts embed.FS
