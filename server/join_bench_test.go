package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchServer is a running server with a fresh data dir and the default
// options (the default throttle: 10 failures, then one per 6 s).
func benchServer(b *testing.B) *testServer {
	b.Helper()
	st, err := Ensure(b.TempDir(), testOptions("bench"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0"})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return &testServer{state: st, srv: srv, addr: srv.Addr().String()}
}

// runJoins sends n joins of token through POST /edgecr/v1/join from
// workers concurrent joiners on 127.0.0.1, each join on a new HTTP/1.1
// connection (a new node: its own TLS handshake), and returns when each
// successful join was answered, in order, and the answers by status.
func runJoins(b *testing.B, ts *testServer, token string, n, workers int) (start time.Time, done []time.Time, codes map[int]int) {
	b.Helper()
	c := ts.joinClient("")
	var next atomic.Int64
	var mu sync.Mutex
	codes = map[int]int{}
	var wg sync.WaitGroup
	start = time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body, _ := json.Marshal(JoinRequest{Token: token, Name: fmt.Sprintf("node-%d", i)})
				resp, err := c.Post(ts.url(APIJoin), "application/json", bytes.NewReader(body))
				code := 0
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				codes[code]++
				if code == http.StatusOK {
					done = append(done, time.Now())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return start, done, codes
}

func benchToken(b *testing.B, ts *testServer, uses int) string {
	b.Helper()
	_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: uses, Role: RolePull}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return token
}

// BenchmarkJoinBurst64 is 64 nodes joining at once from one address (a
// site behind NAT, a provisioning script) on one token with 64 uses, a
// fresh device each iteration: how many succeed and at what rate.
//
//	go test ./server -run '^$' -bench JoinBurst64 -benchtime 3x -count 3
func BenchmarkJoinBurst64(b *testing.B) {
	const joiners = 64
	var ok, rate []float64
	for range b.N {
		b.StopTimer()
		ts := benchServer(b)
		token := benchToken(b, ts, joiners)
		b.StartTimer()
		start, done, codes := runJoins(b, ts, token, joiners, joiners)
		elapsed := time.Since(start)
		if len(done) != joiners {
			b.Logf("answers: %v", codes)
		}
		ok = append(ok, float64(len(done)))
		rate = append(rate, float64(len(done))/elapsed.Seconds())
	}
	b.ReportMetric(median(ok), "succeeded/64")
	b.ReportMetric(median(rate), "joins/s")
}

// BenchmarkJoinFirstVsLast is N joins (EDGECR_BENCH_JOINS, default 2000)
// by 8 concurrent joiners on one token, a fresh device each iteration:
// the rate of the first 100 against the last 100, which shows what a join
// costs as the identities grow.
//
//	go test ./server -run '^$' -bench JoinFirstVsLast -benchtime 1x -count 3
func BenchmarkJoinFirstVsLast(b *testing.B) {
	n := 2000
	if s := os.Getenv("EDGECR_BENCH_JOINS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 200 {
			b.Fatalf("EDGECR_BENCH_JOINS=%q: want a number ≥ 200", s)
		}
		n = v
	}
	var first, last, all []float64
	for range b.N {
		b.StopTimer()
		ts := benchServer(b)
		token := benchToken(b, ts, n)
		b.StartTimer()
		start, done, codes := runJoins(b, ts, token, n, 8)
		if len(done) != n {
			b.Fatalf("%d of %d joins succeeded: %v", len(done), n, codes)
		}
		first = append(first, 100/done[99].Sub(start).Seconds())
		last = append(last, 100/done[n-1].Sub(done[n-101]).Seconds())
		all = append(all, float64(n)/done[n-1].Sub(start).Seconds())
	}
	b.ReportMetric(median(first), "first100_joins/s")
	b.ReportMetric(median(last), "last100_joins/s")
	b.ReportMetric(median(all), "all_joins/s")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
