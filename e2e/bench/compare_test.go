package main

import (
	"strings"
	"testing"
	"time"
)

// The comparison's report: ratios against the anchors, a protocol a
// server does not offer, RSS against the anchors only.
func TestReportCompare(t *testing.T) {
	const mib = 1 << 20
	tr := func(mbps float64, cpu time.Duration) transfer {
		b := int64(512 * mib)
		return transfer{bytes: b, elapsed: time.Duration(float64(b) / (mbps * 1e6) * float64(time.Second)),
			serverCPU: cpuUse{user: cpu / 2, sys: cpu / 2}, serverCPUOK: true, conn: "HTTP/1.1, TLS 1.3 TLS_AES_128_GCM_SHA256"}
	}
	server := func(name string, push, pull float64, pushCPU time.Duration, rss int64) *contender {
		m := &measures{
			push:      []transfer{tr(push, pushCPU), tr(push+10, pushCPU), tr(push-10, pushCPU)},
			pull:      []transfer{tr(pull, time.Second), tr(pull, time.Second), tr(pull, time.Second)},
			imagePush: []time.Duration{80 * time.Millisecond}, imagePull: []time.Duration{30 * time.Millisecond},
			ping: []time.Duration{200 * time.Microsecond},
		}
		return &contender{name: name, rss: rss * mib, m: map[proto]*measures{protoHTTP1: m, protoH2: m}, absent: map[proto]bool{}}
	}
	e := server("edgecrd", 520, 900, time.Second, 40)
	e.absent[protoH2] = true
	cp := server("TLS copy limit", 0, 950, 0, 10)
	cp.copyOnly = true
	r := &compareResults{
		cfg:     compareConfig{size: 512 * mib, runs: 3, n: 200, cost: 5, protos: []proto{protoH2, protoHTTP1}},
		started: time.Now(),
		servers: []*contender{e, server("distribution", 380, 800, 2*time.Second, 68), server("zot", 490, 850, 2*time.Second, 70), cp},
	}
	var b strings.Builder
	reportCompare(&b, r, "go run ./e2e/bench -compare")
	out := b.String()
	for _, want := range []string{
		"| edgecrd | not offered |",
		"| Blob push ≥ 1.05× zot | HTTP/1.1 | 520.0 MB/s | zot 490.0 MB/s | 1.06× | PASS |",
		"| Blob push ≥ 1.05× distribution | HTTP/1.1 | 520.0 MB/s | distribution 380.0 MB/s | 1.37× | PASS |",
		"| CPU per GiB pushed below zot | HTTP/1.1 | 2.00 s | zot 4.00 s | 0.50× | PASS |",
		"| Blob pull ≥ 1.0× the best anchor | HTTP/1.1 | 900.0 MB/s | zot 850.0 MB/s | 1.06× | PASS |",
		"| Blob pull ≥ 0.9× the TLS copy limit | HTTP/1.1 | 900.0 MB/s | copy 950.0 MB/s | 0.95× | PASS |",
		"| Peak RSS lowest (VmHWM over the whole run) | both | edgecrd 40.0 MiB | distribution 68.0 MiB, zot 70.0 MiB |  | PASS |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
