package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
)

// The registry listener's limits on what a peer may hold before and while
// it authenticates. A registry client has a handful of connections and
// requests at a time (docker pushes five layers at once, crane four); the
// limits leave room for many clients behind one NAT.
const (
	// maxHeaderBytes caps a request's header block (Go adds 4 KiB of
	// slack): registry clients send well under 2 KiB; Go's default is 1 MiB.
	maxHeaderBytes = 32 << 10
	// readHeaderTimeout is how long a connection may take to send its TLS
	// handshake and a request's headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a kept-alive connection without a request.
	idleTimeout = 90 * time.Second
	// A request body must deliver minBodyProgress bytes in every
	// bodyProgressWindow, and no read may wait longer than the window:
	// about 550 B/s, so a 10 GiB push over a 1 MB/s link (which needs
	// three hours) goes through, while a body trickled a byte every few
	// seconds is cut within two windows. There is no deadline on a whole
	// body.
	minBodyProgress    = 16 << 10
	bodyProgressWindow = 30 * time.Second
	// DefaultMaxConnsPerAddr and DefaultMaxInFlightPerAddr bound one
	// source address's open connections and concurrent requests (HTTP/2
	// multiplexes many requests on one connection).
	DefaultMaxConnsPerAddr    = 128
	DefaultMaxInFlightPerAddr = 64
)

// addrCounter counts something per source address under a limit.
type addrCounter struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func newAddrCounter(limit int) *addrCounter { return &addrCounter{limit: limit, n: map[string]int{}} }

func (c *addrCounter) acquire(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr] >= c.limit {
		return false
	}
	c.n[addr]++
	return true
}

func (c *addrCounter) release(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr]--; c.n[addr] <= 0 {
		delete(c.n, addr)
	}
}

// connLimitListener bounds the connections one source address holds. A
// connection past the bound takes the place of the address's keep-alive
// connection idle the longest, which is closed (clients keep those open for
// minutes, one per transport, and a busy client behind a NAT has many);
// with none idle, the new connection is closed right after it is
// accepted. Connections still handshaking or sending headers are never
// idle, so unfinished ones cannot crowd out anything but their own
// address's.
type connLimitListener struct {
	net.Listener
	limit int

	mu     sync.Mutex
	byAddr map[string]map[*limitedConn]struct{}
}

func newConnLimitListener(l net.Listener, limit int) *connLimitListener {
	return &connLimitListener{Listener: l, limit: limit, byAddr: map[string]map[*limitedConn]struct{}{}}
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
		c.Close()
	}
}

func (l *connLimitListener) admit(c net.Conn) *limitedConn {
	addr := hostOf(c.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.byAddr[addr]
	if set == nil {
		set = map[*limitedConn]struct{}{}
		l.byAddr[addr] = set
	}
	if len(set) >= l.limit {
		// The connection idle the longest goes: clients reuse the one
		// they used last (Go's transport takes its idle connections
		// last in, first out), so it is the one least likely to carry a
		// request already on its way. Over HTTP/1.1 a request that meets
		// the close fails, and Go clients do not retry a POST.
		var victim *limitedConn
		var since int64
		for o := range set {
			if t := o.idleSince.Load(); t != 0 && (victim == nil || t < since) {
				victim, since = o, t
			}
		}
		if victim == nil {
			return nil
		}
		delete(set, victim)
		victim.Conn.Close() // the server's read of its next request ends
	}
	lc := &limitedConn{Conn: c, l: l, addr: addr}
	set[lc] = struct{}{}
	return lc
}

func (l *connLimitListener) remove(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if set := l.byAddr[c.addr]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(l.byAddr, c.addr)
		}
	}
}

// connState is the http.Server's ConnState hook: it marks which
// connections are idle between requests.
func (l *connLimitListener) connState(c net.Conn, st http.ConnState) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		var since int64
		if st == http.StateIdle {
			since = time.Now().UnixNano()
		}
		lc.idleSince.Store(since)
	}
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

type limitedConn struct {
	net.Conn
	l    *connLimitListener
	addr string
	// idleSince is when the connection last became idle between requests
	// (UnixNano), 0 while it is not.
	idleSince atomic.Int64
	once      sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.remove(c) })
	return c.Conn.Close()
}

// limitInFlight answers 429 to a request from an address that already has
// its limit of requests running.
func limitInFlight(reqs *addrCounter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := remoteHost(r)
		if !reqs.acquire(addr) {
			w.Header().Set("Retry-After", "1")
			refuseUnread(w, r, http.StatusTooManyRequests, errcode.ErrorCodeTooManyRequests.WithMessage(
				fmt.Sprintf("too many requests in flight from %s (limit %d); retry later", addr, reqs.limit)))
			return
		}
		defer reqs.release(addr)
		next.ServeHTTP(w, r)
	})
}

// refuseUnread answers a request without reading its body: the refusal is
// flushed at once and the connection closed, rather than Go's server
// reading up to 256 KiB of whatever body the client trickles first.
func refuseUnread(w http.ResponseWriter, r *http.Request, status int, e errcode.Error) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	writeErrorStatus(w, status, e)
	if r.ContentLength == 0 {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	// Whatever of the body is still to come is not waited for.
	_ = rc.SetReadDeadline(time.Now())
}

// requireBodyProgress holds every request body to the progress rule:
// minBodyProgress bytes per bodyProgressWindow, no read waiting longer
// than the window.
//
// A body the handler left unread is not read afterwards either: Go's
// server would drain up to 256 KiB of it, at whatever pace the client
// sends, to keep the connection; the connection is closed instead.
func requireBodyProgress(window time.Duration, minBytes int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		p := &progressBody{body: r.Body, rc: rc, window: window, min: minBytes}
		r.Body = p
		next.ServeHTTP(w, r)
		if !p.ended {
			_ = rc.SetReadDeadline(time.Now())
		}
	})
}

// errTooSlow ends a body that does not keep up the minimum progress.
var errTooSlow = errors.New("request body too slow")

type progressBody struct {
	body   io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	min    int64
	start  time.Time // of the current window
	n      int64     // bytes in it
	ended  bool
	failed error
	// armed is when the read deadline was last moved. Moving it costs an
	// HTTP/2 stream a message to its connection's serve loop and a timer
	// reset, and a 512 MiB push makes tens of thousands of Reads (under
	// 1 % of edgecrd's CPU in the push's profile, but for nothing). So it
	// moves at most every window/32: a read is cut after between 31/32 of
	// the window and the window of silence.
	armed time.Time
}

func (p *progressBody) Read(b []byte) (int, error) {
	if p.failed != nil {
		return 0, p.failed
	}
	now := time.Now()
	if p.start.IsZero() {
		p.start = now
	}
	if now.Sub(p.armed) >= p.window/32 {
		_ = p.rc.SetReadDeadline(now.Add(p.window))
		p.armed = now
	}
	n, err := p.body.Read(b)
	p.n += int64(n)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.failed = fmt.Errorf("%w: nothing received for %s", errTooSlow, p.window)
			return n, p.failed
		}
		p.end()
		return n, err
	}
	if now = time.Now(); now.Sub(p.start) >= p.window {
		if p.n < p.min {
			// Nothing more is read: the server would otherwise drain up
			// to 256 KiB of the trickle after the answer.
			_ = p.rc.SetReadDeadline(now)
			p.failed = fmt.Errorf("%w: %d bytes in %s, want at least %d", errTooSlow, p.n, now.Sub(p.start).Round(time.Millisecond), p.min)
			return n, p.failed
		}
		p.start, p.n = now, 0
	}
	return n, nil
}

// end lifts the body's read deadline once the body has ended: what the
// server reads next (the next request, or its check for a closed
// connection while the handler works) has its own.
func (p *progressBody) end() {
	if !p.ended {
		p.ended = true
		_ = p.rc.SetReadDeadline(time.Time{})
	}
}

func (p *progressBody) Close() error { return p.body.Close() }

// errClientTooSlow ends a response whose client does not read it.
var errClientTooSlow = errors.New("client not reading the response")

// progressWriter holds a streamed response to the send progress rule,
// the request bodies' rule turned around: it is written in pieces of
// minBodyProgress bytes, and no piece may wait longer than window for
// the client to take it (a write deadline). A client that reads nothing
// is cut window after the buffers between it and the server filled up;
// time spent waiting for the bytes to send (an upstream's pace) does not
// count. distribution and Go's server have no such rule: a response
// write waits for as long as the connection is open.
type progressWriter struct {
	w      io.Writer
	rc     *http.ResponseController
	window time.Duration
	armed  time.Time // when the write deadline was last moved (see progressBody.armed)
	set    bool
}

func (p *progressWriter) send(b []byte) error {
	for len(b) > 0 {
		piece := b[:min(len(b), minBodyProgress)]
		now := time.Now()
		if now.Sub(p.armed) >= p.window/32 {
			if err := p.rc.SetWriteDeadline(now.Add(p.window)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			p.armed, p.set = now, true
		}
		if _, err := p.w.Write(piece); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%w: %d bytes not taken in %s", errClientTooSlow, len(piece), p.window)
			}
			return err
		}
		if err := p.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%w: %d bytes not taken in %s", errClientTooSlow, len(piece), p.window)
			}
			return err
		}
		b = b[len(piece):]
	}
	return nil
}

// end lifts the write deadline: the connection's next response has none.
func (p *progressWriter) end() {
	if p.set {
		_ = p.rc.SetWriteDeadline(time.Time{})
	}
}
