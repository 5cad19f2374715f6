package main

import (
	"math"
	"slices"
	"time"
)

// stats summarise one command's timed runs.
type stats struct {
	n                     int
	median, p90, min, max time.Duration
}

func summarize(s []time.Duration) stats {
	if len(s) == 0 {
		return stats{}
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return stats{n: len(s), median: median(s), p90: percentile(s, 90), min: s[0], max: s[len(s)-1]}
}

// median of sorted samples: the mean of the middle two for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile is the nearest-rank percentile of sorted samples, as e2e/bench
// computes it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
