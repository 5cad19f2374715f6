package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// requestLog is -requests: an http.RoundTripper that prints every request
// of an image push or pull (method, path, status, time to the first byte
// of the answer, and whether it opened a connection and what its TLS
// handshake took), so that two registries' request sequences and round
// trips can be put side by side.
type requestLog struct {
	next  http.RoundTripper
	w     io.Writer
	label string // server, protocol and operation
	start time.Time
	mu    sync.Mutex // serialises n and the writes of w
	n     int
}

func newRequestLog(next http.RoundTripper, w io.Writer, label string) *requestLog {
	return &requestLog{next: next, w: w, label: label, start: time.Now()}
}

func (l *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	var (
		mu        sync.Mutex // the trace's callbacks may run on other goroutines
		reused    bool
		hsStart   time.Time
		handshake time.Duration
		firstByte time.Duration
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			mu.Lock()
			reused = i.Reused
			mu.Unlock()
		},
		TLSHandshakeStart: func() {
			mu.Lock()
			hsStart = time.Now()
			mu.Unlock()
		},
		TLSHandshakeDone: func(tls.ConnectionState, error) {
			mu.Lock()
			handshake = time.Since(hsStart)
			mu.Unlock()
		},
		GotFirstResponseByte: func() {
			mu.Lock()
			firstByte = time.Since(sent)
			mu.Unlock()
		},
	}
	resp, err := l.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	status := "error: " + fmt.Sprint(err)
	if err == nil {
		status = resp.Status
	}
	mu.Lock()
	conn := "reused connection"
	if !reused {
		conn = "new connection"
		if handshake > 0 {
			conn += fmt.Sprintf(", TLS handshake %s", ms(handshake))
		}
	}
	line := fmt.Sprintf("+%s %s %s: %s, first byte after %s, %s", ms(sent.Sub(l.start)), req.Method, req.URL.Path, status, ms(firstByte), conn)
	mu.Unlock()
	l.mu.Lock()
	l.n++
	fmt.Fprintf(l.w, "%s #%d %s\n", l.label, l.n, line)
	l.mu.Unlock()
	return resp, err
}

// prefixWriter puts prefix before every Write (each a whole line).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}
