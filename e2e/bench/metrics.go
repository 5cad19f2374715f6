package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverTime is the mean time edgecrd's handler spent on GET /v2/, from its
// own Prometheus histogram (route "base"): what is left of the client-side
// latency is TLS, HTTP framing and scheduling.
func (c *client) serverTime(ctx context.Context) (time.Duration, error) {
	resp, err := c.do(ctx, http.MethodGet, c.base+"/metrics", nil, 0, http.StatusOK)
	if err != nil {
		return 0, fmt.Errorf("scraping edgecrd metrics: %w", err)
	}
	defer resp.Body.Close()
	const name = "edgecr_http_request_duration_seconds"
	var sum, count float64
	var found int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, `route="base"`) || !strings.Contains(line, `method="GET"`) {
			continue
		}
		metric, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing metric %q: %w", line, err)
		}
		switch {
		case strings.HasPrefix(metric, name+"_sum{"):
			sum, found = v, found+1
		case strings.HasPrefix(metric, name+"_count{"):
			count, found = v, found+1
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading edgecrd metrics: %w", err)
	}
	if found != 2 || count == 0 {
		return 0, fmt.Errorf("no %s{route=\"base\",method=\"GET\"} in edgecrd metrics", name)
	}
	return time.Duration(sum / count * float64(time.Second)), nil
}
