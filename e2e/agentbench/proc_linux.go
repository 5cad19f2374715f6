package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// loadAverage is the 1-minute load average, or "" where it cannot be read.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// childAttr makes the kernel kill edgecrd if the benchmark dies without
// running its cleanup (SIGKILL).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// ownGroup puts a measured command into a process group of its own and
// makes the cancellation of its context kill the whole group, so that an
// interrupted join takes its update-ca-certificates run with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
