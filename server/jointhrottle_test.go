package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// joinClient posts joins over HTTP/1.1, one connection per request (so
// many joiners are many clients, not many streams of one), from source
// address from ("" for any).
func (ts *testServer) joinClient(from string) *http.Client {
	tr := ts.transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.DisableKeepAlives = true
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		tr.DialContext = d.DialContext
	}
	return &http.Client{Transport: tr}
}

// postJoins sends n joins of token at once through c and counts the
// answers by status and error code.
func (ts *testServer) postJoins(t *testing.T, c *http.Client, token string, n int) map[string]int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(JoinRequest{Token: token, Name: fmt.Sprintf("node-%d", i)})
			resp, err := c.Post(ts.url(APIJoin), "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var e APIError
			json.NewDecoder(resp.Body).Decode(&e)
			mu.Lock()
			got[fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

// A burst of valid joins from one address (a site behind NAT, a
// provisioning script on 64 nodes) all succeed: joins in flight are not
// failures. Issue 14: 32 joiners got 16 successes and 284 429s.
func TestJoinBurstFromOneAddressSucceeds(t *testing.T) {
	ts := startServer(t, nil) // the default allowance: 10, then one per 6 s
	_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 64, Role: RolePull}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := ts.postJoins(t, ts.joinClient(""), token, 64)
	if got["200 "] != 64 {
		t.Fatalf("64 concurrent joins from 127.0.0.1 on a 64-use token: %v, want 64×200", got)
	}
	// The token is now used up: those are real failures, counted.
	got = ts.postJoins(t, ts.joinClient(""), token, 30)
	if got["401 TOKEN_USED_UP"] != 10 || got["429 TOO_MANY_REQUESTS"] != 20 {
		t.Fatalf("30 joins on the used-up token: %v, want 10×401 TOKEN_USED_UP and 20×429", got)
	}
}

// Guessing is still stopped, from one address and from many: each
// address gets its allowance of failures and then 429, also for the right
// token, while an address that did not guess still joins.
func TestJoinThrottleStopsGuessingFromManyAddresses(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.FailureBurst = 3; o.FailureEvery = time.Hour })
	_, token, _ := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 2, Role: RolePush}, time.Now())
	p, _ := ParseToken(token)
	bad := FormatToken(p.Pin, p.ID, strings.Repeat("D", 43))
	for i := 2; i <= 9; i++ {
		from := fmt.Sprintf("127.0.0.%d", i)
		c := ts.joinClient(from)
		got := ts.postJoins(t, c, bad, 12)
		if got["401 TOKEN_INVALID"] != 3 || got["429 TOO_MANY_REQUESTS"] != 9 {
			t.Fatalf("12 concurrent guesses from %s with an allowance of 3: %v, want 3×401 and 9×429", from, got)
		}
		if got := ts.postJoins(t, c, token, 1); got["429 TOO_MANY_REQUESTS"] != 1 {
			t.Fatalf("the right token from %s after its guesses: %v, want 429", from, got)
		}
	}
	if got := ts.postJoins(t, ts.joinClient("127.0.0.42"), token, 1); got["200 "] != 1 {
		t.Fatalf("the right token from an address that did not guess: %v, want 200", got)
	}
}

// Attempts that test no secret (a malformed body, a bad name) and the
// device's own failures spend nothing.
func TestJoinThrottleCountsOnlyRealFailures(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.FailureBurst = 2; o.FailureEvery = time.Hour })
	_, token, _ := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	c := ts.joinClient("")
	for range 5 {
		resp, err := c.Post(ts.url(APIJoin), "application/json", strings.NewReader("{not json"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed body: %d, want 400", resp.StatusCode)
		}
		if resp, _, _ := ts.join(t, token, "bad\x1b[31mname"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("name with an escape sequence: %d, want 400", resp.StatusCode)
		}
	}
	if resp, _, e := ts.join(t, token, "ok"); resp.StatusCode != http.StatusOK {
		t.Fatalf("join after 10 requests that tested no secret: %d %+v", resp.StatusCode, e)
	}
}

func TestFailureLimiterHoldsAndSettles(t *testing.T) {
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	f := newFailureLimiter(time.Minute, 2)
	ctx := context.Background()
	a, err := f.begin(ctx, "10.0.0.1", clock)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.begin(ctx, "10.0.0.1", clock)
	if err != nil {
		t.Fatal(err)
	}
	// Both units are held: a third attempt waits for one to settle.
	third := make(chan error, 1)
	go func() {
		c, err := f.begin(ctx, "10.0.0.1", clock)
		if err == nil {
			c.settle(true)
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("third attempt did not wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	a.settle(false) // a success gives its unit back
	a.settle(true)  // and only the first settle counts
	if err := <-third; err != nil {
		t.Fatalf("third attempt after a success: %v", err)
	}
	b.settle(true)
	// Two failures spent the allowance and nothing is in flight: refused,
	// with the time until the next unit.
	_, err = f.begin(ctx, "10.0.0.1", clock)
	if th, ok := err.(*errThrottled); !ok || th.wait != time.Minute {
		t.Fatalf("after two failures: %v, want errThrottled waiting a minute", err)
	}
	now = now.Add(time.Minute)
	if c, err := f.begin(ctx, "10.0.0.1", clock); err != nil {
		t.Fatalf("a minute later: %v", err)
	} else {
		c.settle(false)
	}
	// A waiting attempt gives up with its context.
	h1, _ := f.begin(ctx, "10.0.0.2", clock)
	h2, _ := f.begin(ctx, "10.0.0.2", clock)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := f.begin(short, "10.0.0.2", clock); err != context.DeadlineExceeded {
		t.Fatalf("waiting past the context: %v", err)
	}
	h1.settle(false)
	h2.settle(false)
}

func TestLimitKeyGroupsIPv6By64(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"2001:db8:1:2:aaaa::1":    "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::9":    "2001:db8:1:2::/64",
		"fe80::1%eth0":            "fe80::/64",
		"::ffff:192.0.2.7":        "::ffff:192.0.2.7",
		"not an address (a pipe)": "not an address (a pipe)",
	} {
		if got := limitKey(addr); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", addr, got, want)
		}
	}
}
