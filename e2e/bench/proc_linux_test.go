package main

import (
	"os"
	"testing"
	"time"
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
	// The machine's busy time grows with this process's own work.
	before, err := machineBusy()
	if err != nil || before <= 0 {
		t.Fatalf("machineBusy() = %v, %v; want a positive time", before, err)
	}
	self0, _ := cpuTime(os.Getpid())
	for {
		self, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if self.user+self.sys-self0.user-self0.sys >= 50*time.Millisecond {
			break
		}
	}
	after, err := machineBusy()
	if err != nil || after-before < 40*time.Millisecond {
		t.Errorf("machineBusy() went from %v to %v (%v), while this process alone used 50 ms", before, after, err)
	}
}
