package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
)

// latencyWarmup requests are sent before timing starts: the first pays for
// the TLS handshake and the h2 preface.
const latencyWarmup = 10

// latency is the outcome of n sequential GET /v2/ on one connection.
type latency struct {
	samples []time.Duration
	conn    string
}

// pingLatency times n authenticated GET /v2/ after a warm-up, each from
// sending the request to having read the whole response, and fails if any
// of them needed a new connection.
func (c *client) pingLatency(ctx context.Context, n int) (latency, error) {
	var l latency
	get := func() (time.Duration, error) {
		start := time.Now()
		resp, err := c.do(ctx, http.MethodGet, c.base+"/v2/", nil, 0, http.StatusOK)
		if err != nil {
			return 0, err
		}
		drain(resp)
		d := time.Since(start)
		l.conn = connInfo(resp)
		return d, nil
	}
	for range latencyWarmup {
		if _, err := get(); err != nil {
			return l, fmt.Errorf("warming up: %w", err)
		}
	}
	dials := c.dials.Load()
	l.samples = make([]time.Duration, 0, n)
	for range n {
		d, err := get()
		if err != nil {
			return l, err
		}
		l.samples = append(l.samples, d)
	}
	if extra := c.dials.Load() - dials; extra != 0 {
		return l, fmt.Errorf("GET /v2/ opened %d new connections during the measurement; want one kept alive", extra)
	}
	return l, nil
}

// stats summarise latency samples.
type stats struct {
	n                      int
	mean, median, p99, max time.Duration
}

func summarize(s []time.Duration) stats {
	if len(s) == 0 {
		return stats{}
	}
	s = slices.Clone(s)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return stats{
		n:      len(s),
		mean:   total / time.Duration(len(s)),
		median: percentile(s, 50),
		p99:    percentile(s, 99),
		max:    s[len(s)-1],
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// median of throughput runs (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
