package benchutil

import (
	"os"
	"strings"
	"syscall"
)

// LoadAverage is the 1-minute load average, or "" where it cannot be read.
func LoadAverage() string {
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

// ChildAttr makes the kernel kill a child (edgecrd) if the benchmark dies
// without running its cleanup (SIGKILL).
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
