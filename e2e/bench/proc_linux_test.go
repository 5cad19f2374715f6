package main

import (
	"os"
	"testing"
)

func TestProcReaders(t *testing.T) {
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("peakRSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Errorf("cpuTime(self): %v", err)
	}
	if _, err := peakRSS(-1); err == nil {
		t.Error("peakRSS(-1) succeeded")
	}
}
