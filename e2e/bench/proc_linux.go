package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// peakRSS is the process's high-water resident set size (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	v := benchutil.ProcField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")
	if v == "" {
		return 0, fmt.Errorf("reading VmHWM of process %d: not in /proc/%d/status", pid, pid)
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing VmHWM %q of process %d: %w", v, pid, err)
	}
	return kb << 10, nil
}

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ, fixed at
// 100 by the kernel ABI).
const userHZ = 100

// cpuTime is the user and system CPU time the process has used so far.
func cpuTime(pid int) (cpuUse, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuUse{}, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields count from its ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return cpuUse{}, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return cpuUse{}, fmt.Errorf("parsing /proc/%d/stat: too few fields", pid)
	}
	var t [2]time.Duration
	for i, s := range f[11:13] { // utime, stime: fields 14 and 15
		ticks, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuUse{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
		}
		t[i] = time.Duration(ticks) * time.Second / userHZ
	}
	return cpuUse{user: t[0], sys: t[1]}, nil
}

// machineBusy is the CPU time the whole machine has spent busy so far,
// every CPU summed: user, nice, system, irq and softirq from /proc/stat
// (not idle, iowait or steal). The kernel charges each tick to the task
// it interrupts (tick-based accounting), so a process's own utime+stime
// also holds the interrupts and host work that landed while it ran; the
// machine's total does not depend on where they landed.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading the machine's CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("parsing /proc/stat: first line %q is not the cpu total", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}

// maxRSS is the peak resident set size of an exited process, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // KiB on Linux
	}
	return 0
}

// currentRSS is the process's resident set size now (VmRSS), in bytes.
func currentRSS(pid int) (int64, error) {
	v := benchutil.ProcField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading VmRSS of process %d: %q: %w", pid, v, err)
	}
	return kb << 10, nil
}
