package agent

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server"
)

// startEdgecrd runs a real edgecrd on 127.0.0.1 with the given throttle
// and returns its URL and state.
func startEdgecrd(t *testing.T, burst int, every time.Duration) (*url.URL, *server.State) {
	t.Helper()
	name := "box"
	st, err := server.Ensure(t.TempDir(), server.InitOptions{
		Name:       &name,
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		DefaultIPs: func() ([]net.IP, error) { return nil, nil },
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, st, server.Options{Listen: "127.0.0.1:0", FailureBurst: burst, FailureEvery: every})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edgecrd: %v", err)
		}
	})
	base, err := ParseDeviceURL("https://" + srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return base, st
}

func newToken(t *testing.T, st *server.State, uses int) Token {
	t.Helper()
	_, s, err := st.CreateToken(server.TokenOptions{TTL: time.Hour, Uses: uses, Role: server.RolePull}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A node whose address the device throttles (a neighbour behind the same
// NAT guessed) waits as the device's Retry-After says, says so, and joins
// once the device lets it.
func TestJoinWaitsOutTheThrottle(t *testing.T) {
	base, st := startEdgecrd(t, 2, 2*time.Second)
	good := newToken(t, st, 1)
	wrong := good
	wrong.secret = strings.Repeat("W", len(good.secret))
	c := NewDeviceClient(base, good.Pin)
	defer c.Close()
	ctx := context.Background()
	for range 2 {
		if _, err := c.Join(ctx, wrong, "guess"); !errors.Is(err, ErrTokenRejected) {
			t.Fatalf("wrong secret: %v, want ErrTokenRejected", err)
		}
	}
	if _, err := c.Join(ctx, good, "node"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("the right token after 2 failures with an allowance of 2: %v, want ErrThrottled", err)
	}

	var notes []string
	start := time.Now()
	var resp *JoinResponse
	err := withRetry(ctx, DefaultRetry, "joining", func(s string) { notes = append(notes, s) }, func() (err error) {
		resp, err = c.Join(ctx, good, "node")
		return err
	})
	if err != nil {
		t.Fatalf("join with retry: %v (notes %q)", err, notes)
	}
	if resp.Username == "" || len(notes) == 0 || !strings.Contains(notes[0], "throttling") || !strings.Contains(notes[0], "joining again in") {
		t.Fatalf("join with retry: answer %+v, notes %q; want a credential and a note of what it waited for", resp, notes)
	}
	// The device asked for at least a second (its next unit is ~2 s away).
	if d := time.Since(start); d < time.Second {
		t.Errorf("joined after %s: the Retry-After was not honoured", d)
	}
	t.Logf("notes: %q, joined after %s", notes, time.Since(start).Round(time.Millisecond))
}

// The retry is bounded: a device that keeps refusing is given up on, the
// token unspent and the error saying why.
func TestJoinRetryIsBounded(t *testing.T) {
	base, st := startEdgecrd(t, 1, time.Hour)
	good := newToken(t, st, 1)
	wrong := good
	wrong.secret = strings.Repeat("W", len(good.secret))
	c := NewDeviceClient(base, good.Pin)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Join(ctx, wrong, "guess"); !errors.Is(err, ErrTokenRejected) {
		t.Fatalf("wrong secret: %v", err)
	}
	calls := 0
	err := withRetry(ctx, DefaultRetry, "joining", nil, func() error {
		calls++
		_, err := c.Join(ctx, good, "node")
		return err
	})
	if !errors.Is(err, ErrThrottled) || calls != 1 || !strings.Contains(err.Error(), "beyond the 3m0s this join waits in all") {
		t.Fatalf("throttled for an hour: %v after %d calls; want ErrThrottled at once, saying the wait is beyond the bound", err, calls)
	}
	toks, err := st.Tokens()
	if err != nil || len(toks) != 1 || toks[0].Used != 0 {
		t.Fatalf("tokens after the refused joins: %+v %v, want one unused", toks, err)
	}

	// Attempts bound it too, and a cancelled context stops the wait.
	var mu sync.Mutex
	calls = 0
	err = withRetry(ctx, RetryPolicy{Attempts: 2, MaxWait: time.Hour}, "joining", nil, func() error {
		mu.Lock()
		calls++
		mu.Unlock()
		return &APIError{Op: "join", Status: 503, Code: "BUSY", RetryAfter: 10 * time.Millisecond}
	})
	if calls != 2 || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("2 attempts: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = withRetry(cctx, DefaultRetry, "joining", nil, func() error {
		return &APIError{Op: "join", Status: 429, RetryAfter: time.Minute}
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled while waiting: %v", err)
	}
}
