package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// RetryPolicy bounds how long join waits out a device that answers 429
// (throttling this address) or 503 (busy): a node provisioned with many
// others behind one address finishes on its own instead of failing.
type RetryPolicy struct {
	// Attempts is the number of requests in all, the first included; 1
	// does not retry.
	Attempts int
	// MaxWait bounds the waits added up: a Retry-After that would take
	// them past it is not waited for.
	MaxWait time.Duration
}

// DefaultRetry is join's policy when JoinOptions.Retry is zero: 8
// attempts within 3 minutes of waiting, enough for the device's default
// throttle (one attempt per 6 s once its allowance is spent) and for a
// burst of joins from one address queueing behind each other.
var DefaultRetry = RetryPolicy{Attempts: 8, MaxWait: 3 * time.Minute}

// retryable reports whether err is a device answer worth waiting out, and
// how long the device asked to wait (0: it did not say).
func retryable(err error) (wait time.Duration, ok bool) {
	var ae *APIError
	if !errors.As(err, &ae) {
		return 0, false
	}
	if ae.Status != http.StatusTooManyRequests && ae.Status != http.StatusServiceUnavailable {
		return 0, false
	}
	return ae.RetryAfter, true
}

// backoff is the wait before attempt n+1 (n ≥ 1) when the device named
// none: 1 s, 2 s, 4 s, … up to 30 s.
func backoff(n int) time.Duration {
	return min(30*time.Second, time.Second<<min(n-1, 5))
}

// jitter adds up to a quarter of d (at least up to 250 ms), so that nodes
// throttled together do not all come back in the same second.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/4+250*time.Millisecond)
}

// withRetry runs op until it succeeds, fails with an error that is not a
// 429 or 503, or p is exhausted. Before each wait it tells note what it
// waits for and how long. The error of the last attempt is returned, with
// how many were made when there was more than one. what names op in the
// note: "joining", "fetching the device CA".
func withRetry(ctx context.Context, p RetryPolicy, what string, note func(string), op func() error) error {
	if p.Attempts < 1 {
		p = DefaultRetry
	}
	var waited time.Duration
	for n := 1; ; n++ {
		err := op()
		if err == nil {
			return nil
		}
		asked, ok := retryable(err)
		if !ok {
			return err
		}
		if n >= p.Attempts {
			if n == 1 {
				return err
			}
			return fmt.Errorf("%w (gave up after %d attempts, %s of waiting)", err, n, waited.Round(time.Second))
		}
		wait := asked
		if wait <= 0 {
			wait = backoff(n)
		}
		if waited+wait > p.MaxWait {
			return fmt.Errorf("%w (not retrying: the device asks for %s more, beyond the %s this join waits in all)", err, wait, p.MaxWait)
		}
		wait = min(jitter(wait), p.MaxWait-waited)
		if note != nil {
			note(fmt.Sprintf("%v; %s again in %s (attempt %d of %d)", err, what, wait.Round(100*time.Millisecond), n+1, p.Attempts))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (stopped waiting to retry: %w)", err, ctx.Err())
		case <-t.C:
		}
		waited += wait
	}
}
