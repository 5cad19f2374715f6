package main

import "golang.org/x/sys/unix"

// isTerminalFd reports whether fd is a terminal (as golang.org/x/term
// does, without adding that module).
func isTerminalFd(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TIOCGETA)
	return err == nil
}
