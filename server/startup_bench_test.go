package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// largeStore fills a data dir's registry storage with files blobs of 64
// bytes (blobs/sha256/<xx>/<hex>/data, as distribution lays them out), the
// file count of the 7.1 GB store.
func largeStore(tb testing.TB, files int) *State {
	tb.Helper()
	st, err := Ensure(tb.TempDir(), testOptions("bench"), time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	data := make([]byte, 64)
	for i := range files {
		s := sha256.Sum256([]byte(strconv.Itoa(i)))
		h := hex.EncodeToString(s[:])
		dir := osPath(st.StorageDir(), blobDir(digest("sha256:"+h)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data"), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

// firstAnswer starts a server on st and returns how long it took from the
// call to New to the first answered GET /v2/ (401 without credentials is an
// answer), then stops it.
func firstAnswer(tb testing.TB, st *State) time.Duration {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	url := "https://" + srv.Addr().String() + "/v2/"
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > time.Minute {
			tb.Fatalf("no answer after a minute: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	return elapsed
}

// BenchmarkStartupLargeStore is the time from start to the first answered
// /v2/ request on a store of EDGECR_BENCH_STORE_FILES files (default
// 100,000), page cache warm (the second and later starts of a device):
//
//	go test ./server -run '^$' -bench StartupLargeStore -benchtime 5x
func BenchmarkStartupLargeStore(b *testing.B) {
	files := 100000
	if v := os.Getenv("EDGECR_BENCH_STORE_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("EDGECR_BENCH_STORE_FILES=%q: %v", v, err)
		}
		files = n
	}
	st := largeStore(b, files)
	firstAnswer(b, st) // warms the page cache
	b.ResetTimer()
	var total time.Duration
	for b.Loop() {
		total += firstAnswer(b, st)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/first-answer")
	b.ReportMetric(float64(files), "files")
	fmt.Fprintf(os.Stderr, "startup to first /v2/ answer at %d files: %.1f ms\n", files, float64(total.Microseconds())/1e3/float64(b.N))
}
