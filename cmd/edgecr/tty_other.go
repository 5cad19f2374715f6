//go:build !linux && !darwin && !windows

package main

// isTerminalFd: on the other systems edgecr builds for, never a terminal
// (no prompt, no progress bar).
func isTerminalFd(uintptr) bool { return false }
