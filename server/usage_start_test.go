package server

import (
	"testing"
	"time"
)

// TestUsageCountsInTheBackground: starting does not wait for the storage
// walk; until it is done, reservations under a quota wait for it (and are
// then judged on the counted usage), reservations without a quota do not.
func TestUsageCountsInTheBackground(t *testing.T) {
	release := make(chan struct{})
	size := func(string) int64 { <-release; return 1000 }
	started := make(chan [2]*usage)
	go func() {
		started <- [2]*usage{
			newUsageSized(t.TempDir(), 1500, time.Now, size),
			newUsageSized(t.TempDir(), 0, time.Now, size),
		}
	}()
	var quota, noQuota *usage
	select {
	case us := <-started:
		quota, noQuota = us[0], us[1]
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("newUsage waits for the storage walk")
	}
	if !noQuota.reserve(1 << 30) {
		t.Fatal("without a quota a reservation was refused")
	}
	results := make(chan bool, 2)
	go func() { results <- quota.reserve(600) }()
	select {
	case ok := <-results:
		close(release)
		t.Fatalf("a reservation under the quota was judged (%v) before usage was counted", ok)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case ok := <-results:
		if ok {
			t.Fatal("600 bytes on 1000 counted fit a 1500-byte quota")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reservation still waits after the walk")
	}
	if !quota.reserve(400) {
		t.Fatal("400 bytes on 1000 counted did not fit a 1500-byte quota")
	}
	if got := quota.used(); got != 1000 {
		t.Fatalf("used %d, want 1000", got)
	}
}
