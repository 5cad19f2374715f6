package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// raiseFDLimit lifts the soft limit on open files to n (or the hard
// limit), for tests that hold many connections; restored afterwards.
func raiseFDLimit(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatalf("reading the open file limit: %v", err)
	}
	if old.Cur >= n {
		return
	}
	want := old
	want.Cur = min(n, old.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Fatalf("raising the open file limit: %v", err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	testenv.Need(t, want.Cur >= n, fmt.Sprintf("the open file limit %d (hard) is below the %d this test needs", want.Cur, n))
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// vmRSS is this process's resident set in bytes.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// hostileStats is what the attackers saw.
type hostileStats struct {
	mu         sync.Mutex
	open, peak atomic.Int64
	dials      atomic.Int64
	headerCut  atomic.Int64    // 431 to an unfinished 1 MiB header
	early401   []time.Duration // a trickled PATCH's 401, from its headers
}

// Issue 10 F: 500 hostile connections (half sending a header that never
// ends, half trickling an unauthenticated chunked PATCH a byte every 2 s)
// from 50 loopback addresses, against the real listener; meanwhile an
// authenticated client's GET /v2/ stays fast, memory stays bounded, the
// header is cut at its limit and every trickled PATCH gets its 401 before
// its body ends.
//
// Bounds: GET /v2/ p99 under 1 s plus five times its p99 just before the
// attack (a few ms on an idle machine; the slack is for a shared CI host),
// Go heap growth under 96 MiB while the connections are held, the 401 to
// a trickled PATCH within 5 s (it comes at once; the body never ends).
func TestRegistryListenerUnderHostileConnections(t *testing.T) {
	const hostile, addrs = 500, 50
	raiseFDLimit(t, 4096)
	ts := startServer(t, nil)
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 1, 1)}, ts.srv.Addr().(*net.TCPAddr))
	testenv.Need(t, err == nil, fmt.Sprintf("127.0.1.x cannot be a source address here: %v", err))
	c.Close()

	getV2 := func(n int) []time.Duration {
		var lat []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			resp := ts.do("GET", "/v2/", "admin", ts.adminPW, nil, nil)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(start))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v2/: %d", resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return lat
	}
	quiet := getV2(100)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, rss0 := int64(ms.HeapInuse), vmRSS()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &hostileStats{}
	var wg sync.WaitGroup
	for i := 0; i < hostile; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attack(ctx, ts.addr, net.IPv4(127, 0, 1, byte(1+i%addrs)), attackKind(i%5), st)
		}()
	}

	// Peaks of memory while they run.
	var heapPeak, rssPeak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heapPeak.Store(max(heapPeak.Load(), int64(ms.HeapInuse)))
			rssPeak.Store(max(rssPeak.Load(), vmRSS()))
		}
	}()

	time.Sleep(4 * time.Second) // the attackers connect and settle
	lat := getV2(200)
	cancel()
	wg.Wait()
	<-sampled

	st.mu.Lock()
	early := st.early401
	st.mu.Unlock()
	t.Logf("%d hostile connections from %d addresses (peak %d open at once, %d dials); GET /v2/ before them: p50 %s, p99 %s; while held: "+
		"GET /v2/ p50 %s, p99 %s, max %s (%d requests); Go heap in use %d MiB -> peak %d MiB (+%d MiB); RSS %d MiB -> peak %d MiB (+%d MiB); "+
		"unfinished 1 MiB headers cut with 431: %d; trickled PATCHes answered 401 while their body trickled: %d, p50 %s, p99 %s after their headers; load average %s",
		hostile, addrs, st.peak.Load(), st.dials.Load(), percentile(quiet, .5).Round(time.Microsecond), percentile(quiet, .99).Round(time.Microsecond),
		percentile(lat, .5).Round(time.Microsecond), percentile(lat, .99).Round(time.Microsecond), percentile(lat, 1).Round(time.Microsecond), len(lat),
		heap0>>20, heapPeak.Load()>>20, (heapPeak.Load()-heap0)>>20, rss0>>20, rssPeak.Load()>>20, (rssPeak.Load()-rss0)>>20,
		st.headerCut.Load(), len(early), percentile(early, .5).Round(time.Millisecond), percentile(early, .99).Round(time.Millisecond), loadAverage())
	// The machine is shared (CI, other tests): the bound is relative to the
	// same client's latency just before the attack.
	if p99, bound := percentile(lat, .99), time.Second+5*percentile(quiet, .99); p99 > bound {
		t.Errorf("GET /v2/ p99 %s under 500 hostile connections, bound %s (1 s + 5 x p99 without them)", p99, bound)
	}
	if grew := heapPeak.Load() - heap0; grew > 96<<20 {
		t.Errorf("Go heap grew by %d MiB under 500 hostile connections, bound 96 MiB", grew>>20)
	}
	if st.headerCut.Load() == 0 {
		t.Errorf("no unfinished 1 MiB header was cut with 431")
	}
	if len(early) == 0 {
		t.Errorf("no trickled unauthenticated PATCH got its 401 before its body ended")
	} else if p99 := percentile(early, .99); p99 > 5*time.Second {
		t.Errorf("trickled PATCHes got their 401 after %s (p99), want it at once, not after their body", p99)
	}
}

type attackKind int

const (
	// 2 in 5: an unauthenticated chunked PATCH trickling a byte every 2 s.
	tricklePATCH attackKind = iota
	tricklePATCH2
	// 2 in 5: a header growing by 1 KiB a second, never finished.
	slowHeader
	slowHeader2
	// 1 in 5: a header growing by 64 KiB every 200 ms to 1 MiB, then held.
	bigHeader
)

// attack holds one hostile connection from src at a time until ctx ends,
// reconnecting 5 s after the server closes one.
func attack(ctx context.Context, addr string, src net.IP, kind attackKind, st *hostileStats) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		raw, err := d.DialContext(ctx, "tcp", addr)
		st.dials.Add(1)
		if err != nil {
			sleepCtx(ctx, 5*time.Second)
			continue
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		stop := context.AfterFunc(ctx, func() { c.Close() })
		if n := st.open.Add(1); n > st.peak.Load() {
			st.peak.Store(n)
		}
		switch kind {
		case tricklePATCH, tricklePATCH2:
			tricklePatch(ctx, c, st)
		case slowHeader, slowHeader2:
			unfinishedHeader(ctx, c, st, 1<<10, time.Second)
		default:
			unfinishedHeader(ctx, c, st, 64<<10, 200*time.Millisecond)
		}
		st.open.Add(-1)
		stop()
		c.Close()
		sleepCtx(ctx, 5*time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// unfinishedHeader sends a header line that grows by step every interval
// up to 1 MiB and never ends, then holds the connection.
func unfinishedHeader(ctx context.Context, c net.Conn, st *hostileStats, step int, interval time.Duration) {
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(c).ReadString('\n')
		answered <- line
	}()
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Pad: "); err != nil {
		return
	}
	pad := strings.Repeat("a", step)
	for sent := 0; sent < 1<<20; sent += len(pad) {
		select {
		case <-ctx.Done():
			return
		case line := <-answered:
			if strings.HasPrefix(line, "HTTP/1.1 431") {
				st.headerCut.Add(1)
			}
			return
		case <-time.After(interval):
		}
		if _, err := io.WriteString(c, pad); err != nil {
			break
		}
	}
	if line := <-answered; strings.HasPrefix(line, "HTTP/1.1 431") {
		st.headerCut.Add(1)
	}
}

// tricklePatch sends an unauthenticated chunked PATCH whose body comes a
// byte every 2 s, and records when the 401 came.
func tricklePatch(ctx context.Context, c net.Conn, st *hostileStats) {
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(c).ReadString('\n')
		answered <- line
	}()
	_, err := io.WriteString(c, "PATCH /v2/hostile/a/blobs/uploads/0123 HTTP/1.1\r\nHost: registry\r\n"+
		"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	if err != nil {
		return
	}
	sent := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case line := <-answered:
			if strings.HasPrefix(line, "HTTP/1.1 401") {
				st.mu.Lock()
				st.early401 = append(st.early401, time.Since(sent))
				st.mu.Unlock()
			}
			// Hold the connection until the server closes it.
			io.Copy(io.Discard, c)
			return
		case <-time.After(2 * time.Second):
		}
		if _, err := io.WriteString(c, "1\r\na\r\n"); err != nil {
			<-answered
			return
		}
	}
}
