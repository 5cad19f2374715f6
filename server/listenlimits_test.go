package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// pacedReader delivers n bytes, step at a time, one step per every.
type pacedReader struct {
	n, step int
	every   time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	time.Sleep(p.every)
	k := min(p.step, p.n, len(b))
	for i := range b[:k] {
		b[i] = 'x'
	}
	p.n -= k
	return k, nil
}

// Issue 10 F: a body must keep up a minimum progress, but nothing bounds
// a whole body's time: a steady slow body longer than many windows goes
// through, a trickle or a stall is cut. (The server's window is 30 s and
// its minimum 16 KiB; here 200 ms and 1 KiB, with the same code.)
func TestBodyProgressRule(t *testing.T) {
	const window, minBytes = 200 * time.Millisecond, 1 << 10
	srv := httptest.NewServer(requireBodyProgress(window, minBytes, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
			fmt.Fprintf(w, "%d bytes, then %v", n, err)
			return
		}
		fmt.Fprintf(w, "%d bytes", n)
	})))
	defer srv.Close()
	cases := []struct {
		name   string
		body   io.Reader
		status int
		want   string
	}{
		{"steady and slow, 8 windows long", &pacedReader{n: 80 << 10, step: 2 << 10, every: 40 * time.Millisecond}, http.StatusOK, "81920 bytes"},
		{"trickle", &pacedReader{n: 1 << 20, step: 10, every: 20 * time.Millisecond}, http.StatusRequestTimeout, "request body too slow"},
		{"stall", io.MultiReader(strings.NewReader("abc"), &pacedReader{n: 1 << 20, step: 1, every: 3 * window}), http.StatusRequestTimeout, "nothing received"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, err := http.Post(srv.URL, "application/octet-stream", io.NopCloser(c.body)) // chunked
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
				t.Errorf("%d %q after %s, want %d %q", resp.StatusCode, b, took.Round(time.Millisecond), c.status, c.want)
			}
			// A cut body is not drained afterwards (Go's server would read
			// up to 256 KiB of it before answering: minutes of a trickle).
			if c.status != http.StatusOK && took > 25*window {
				t.Errorf("the answer to a cut body took %s", took.Round(time.Millisecond))
			}
		})
	}
}

// Issue 10 F: one source address holds at most MaxConnsPerAddr
// connections; another address is served meanwhile.
func TestConnectionsPerAddressBounded(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxConnsPerAddr = 4 })
	dial := func(src net.IP) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	var held []*tls.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 4; i++ {
		c, err := dial(net.IPv4(127, 0, 0, 1))
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	if c, err := dial(net.IPv4(127, 0, 0, 1)); err == nil {
		c.Close()
		t.Fatalf("5th connection from one address completed its handshake")
	}
	if c, err := dial(net.IPv4(127, 0, 0, 2)); err != nil {
		t.Logf("no second loopback address here (%v): skipping the other-address check", err)
	} else {
		c.Close()
	}
	// A closed connection gives its place back.
	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := dial(net.IPv4(127, 0, 0, 1))
		if err == nil {
			held = append(held, c)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Idle keep-alive connections (a request done, waiting for the next)
	// make way for new ones: clients keep one per transport for minutes.
	// The one idle the longest goes (clients reuse the last one used), so
	// the requests go out in order, apart enough for the clock to tell.
	for i, c := range held {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: registry\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request on connection %d: %v", i+1, err)
		}
		resp.Body.Close()
	}
	time.Sleep(50 * time.Millisecond) // the server marks them idle
	c, err := dial(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatalf("a 5th connection while the 4 are idle: %v", err)
	}
	held = append(held, c)
	var closed []int
	for i, c := range held[:4] {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed = append(closed, i+1)
		}
	}
	if len(closed) != 1 || closed[0] != 1 {
		t.Errorf("idle connections closed for the new one: %v, want [1] (the one idle the longest)", closed)
	}
}

// Issue 10 F: one source address has at most MaxInFlightPerAddr requests
// running (HTTP/2 puts many on one connection); the next gets 429.
func TestRequestsInFlightPerAddressBounded(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxInFlightPerAddr = 2 })
	var held []*heldRequest
	for i := 0; i < 2; i++ {
		h := ts.hold(t, "PATCH", ts.startUpload(t, "inflight/a"), "")
		h.body.Write([]byte("x"))
		held = append(held, h)
	}
	inside()
	resp := ts.do("GET", "/v2/", "admin", ts.adminPW, nil, nil)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "too many requests in flight") {
		t.Errorf("3rd request in flight: %d %s, want 429", resp.StatusCode, body)
	}
	for _, h := range held {
		if resp := h.finish(t, []byte("y")); resp.StatusCode != http.StatusAccepted {
			t.Errorf("held PATCH: %d", resp.StatusCode)
		}
	}
	if resp := ts.do("GET", "/v2/", "admin", ts.adminPW, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after they ended: %d", resp.StatusCode)
	}
}

// Issue 10 F: a request whose body its handler does not read (/healthz,
// say) is answered and its connection closed, not kept open while the
// server drains a trickled body.
func TestUnreadBodyIsNotDrained(t *testing.T) {
	ts := startServer(t, nil)
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /healthz HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer while the body trickles: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The body never ends; the server must not wait for it.
	start := time.Now()
	_, err = br.ReadByte()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open %s after the answer, with the body unfinished", time.Since(start).Round(time.Millisecond))
	}
}
