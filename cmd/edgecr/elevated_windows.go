package main

import "golang.org/x/sys/windows"

// elevated reports whether this process runs with an elevated token (UAC
// "Run as administrator"): what changing the hosts file and the
// LocalMachine Root store needs.
func elevated() bool { return windows.GetCurrentProcessToken().IsElevated() }
