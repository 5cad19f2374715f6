package server

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter throttles failed authentication attempts per source
// address: a burst of attempts, then one per interval. Requests without
// credentials (the challenge round trip every client makes first) are not
// failures.
type failureLimiter struct {
	every time.Duration
	burst int
	max   int // entries kept; beyond it the oldest idle ones go

	mu    sync.Mutex
	peers map[string]*peerLimit
}

type peerLimit struct {
	lim  *rate.Limiter
	last time.Time
}

func newFailureLimiter(every time.Duration, burst int) *failureLimiter {
	return &failureLimiter{every: every, burst: burst, max: 10000, peers: map[string]*peerLimit{}}
}

// take spends one failure allowance of addr, atomically. ok is false when
// addr has none left (nothing is spent then) and wait says when it may try
// again; refund gives the allowance back, for an attempt that succeeded.
func (f *failureLimiter) take(addr string, now time.Time) (ok bool, wait time.Duration, refund func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.peers[addr]
	if p == nil {
		if len(f.peers) >= f.max {
			f.evict(now)
		}
		p = &peerLimit{lim: rate.NewLimiter(rate.Every(f.every), f.burst)}
		f.peers[addr] = p
	}
	p.last = now
	r := p.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return false, d, func() {}
	}
	return true, 0, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		r.CancelAt(now)
	}
}

// evict drops peers whose bucket has refilled; if none has, the least
// recently seen one.
func (f *failureLimiter) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for a, p := range f.peers {
		if p.lim.TokensAt(now) >= float64(f.burst) {
			delete(f.peers, a)
			continue
		}
		if oldest == "" || p.last.Before(oldestAt) {
			oldest, oldestAt = a, p.last
		}
	}
	if len(f.peers) >= f.max && oldest != "" {
		delete(f.peers, oldest)
	}
}
