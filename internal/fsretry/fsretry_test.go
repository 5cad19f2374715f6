package fsretry

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var errBusy = errors.New("sharing violation")

func TestRetry(t *testing.T) {
	busy := func(err error) bool { return errors.Is(err, errBusy) }
	t.Run("succeeds once the holder lets go", func(t *testing.T) {
		tries := 0
		var slept []time.Duration
		err := retry(func() error {
			if tries++; tries < 4 {
				return errBusy
			}
			return nil
		}, busy, func(d time.Duration) { slept = append(slept, d) }, time.Second, "hosts")
		if err != nil || tries != 4 {
			t.Fatalf("retry = %v after %d tries", err, tries)
		}
		if want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}; !equal(slept, want) {
			t.Errorf("slept %v, want %v", slept, want)
		}
	})
	t.Run("other errors are not retried", func(t *testing.T) {
		other := errors.New("no such file")
		tries := 0
		err := retry(func() error { tries++; return other }, busy, func(time.Duration) { t.Fatal("slept") }, time.Second, "hosts")
		if !errors.Is(err, other) || tries != 1 {
			t.Fatalf("retry = %v after %d tries", err, tries)
		}
	})
	t.Run("bounded, then says what to close", func(t *testing.T) {
		var total time.Duration
		err := retry(func() error { return errBusy }, busy, func(d time.Duration) {
			if d > 500*time.Millisecond {
				t.Errorf("slept %s at once", d)
			}
			total += d
		}, 5*time.Second, `C:\Windows\System32\drivers\etc\hosts`)
		if !errors.Is(err, errBusy) || !strings.Contains(err.Error(), "antivirus") || !strings.Contains(err.Error(), `etc\hosts`) {
			t.Fatalf("retry = %v", err)
		}
		if total < 5*time.Second || total > 6*time.Second {
			t.Errorf("waited %s, want about the 5 s budget", total)
		}
	})
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
