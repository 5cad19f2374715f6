package benchutil

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the host for the report: nproc, CPU model, memory,
// kernel. Fields that cannot be read (no /proc) are left out.
func Machine() string {
	parts := []string{fmt.Sprintf("nproc %d", runtime.NumCPU())}
	if v := ProcField("/proc/cpuinfo", "model name"); v != "" {
		parts = append(parts, "CPU "+v)
	}
	if v := ProcField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			parts = append(parts, fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20)))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	parts = append(parts, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	return strings.Join(parts, ", ")
}

// ProcField is the value of the first "key: value" line of a /proc file, or
// "" when the file cannot be read or has no such line.
func ProcField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
