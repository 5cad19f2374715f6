package main

import (
	"os/exec"
	"syscall"
)

// ownGroup puts a measured command into a process group of its own and
// makes the cancellation of its context kill the whole group, so that an
// interrupted join takes its update-ca-certificates run with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
