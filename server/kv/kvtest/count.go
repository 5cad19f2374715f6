package kvtest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Counter is an http.RoundTripper that counts the requests an object store
// client sends, by method and answer: "GET 304", "PUT 412".
type Counter struct {
	Next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

// RoundTrip implements http.RoundTripper.
func (c *Counter) RoundTrip(r *http.Request) (*http.Response, error) {
	next := c.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	k := r.Method + " error"
	if err == nil {
		k = fmt.Sprintf("%s %d", r.Method, resp.StatusCode)
	}
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	c.mu.Unlock()
	return resp, err
}

// Take returns the counts since the last Take and resets them.
func (c *Counter) Take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

// Total is the number of requests in counts.
func Total(counts map[string]int) int {
	t := 0
	for _, v := range counts {
		t += v
	}
	return t
}

// Format is counts as "GET 200: 3, PUT 412: 1", sorted.
func Format(counts map[string]int) string {
	var ks []string
	for k, v := range counts {
		ks = append(ks, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}
