package main

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

func TestWyrandIndependentOfReadSizes(t *testing.T) {
	const n = 1<<16 + 5
	want := make([]byte, n)
	if _, err := io.ReadFull(newWyrand(7), want); err != nil {
		t.Fatal(err)
	}
	r := newWyrand(7)
	got := make([]byte, 0, n)
	sizes := rand.New(rand.NewPCG(1, 2))
	for len(got) < n {
		buf := make([]byte, min(sizes.IntN(20), n-len(got)))
		k, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:k]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("stream depends on read sizes")
	}
	other := make([]byte, 64)
	io.ReadFull(newWyrand(8), other)
	if bytes.Equal(other, want[:64]) {
		t.Fatal("seeds 7 and 8 give the same stream")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1GiB", 1 << 30}, {"512MiB", 512 << 20}, {"100MB", 100e6}, {"4096", 4096},
		{"2 kib", 2048}, {"3B", 3}, {"1gb", 1e9},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "-1GiB", "1.5GiB", "GiB", "1TiB", "99999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded; want an error", in)
		}
	}
}

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	got := summarize(s)
	want := stats{n: 100, mean: 50500 * time.Microsecond, median: 50 * time.Millisecond, p99: 99 * time.Millisecond, max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if s[0] != 100*time.Millisecond {
		t.Error("summarize sorted its argument")
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v, want 2", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v, want 2.5", m)
	}
}
