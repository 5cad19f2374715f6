//go:build !windows

package main

// desktopUsers: unix has SUDO_USER (agent.ResolveUser); nothing to compare.
func desktopUsers() (current, desktop string, err error) { return "", "", nil }
