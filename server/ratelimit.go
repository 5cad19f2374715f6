package server

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// failureLimiter throttles failed authentication attempts per source
// address: a burst of attempts, then one per interval. Requests without
// credentials (the challenge round trip every client makes first) are not
// failures, and neither are attempts still in flight: only an attempt that
// failed (a wrong, expired or used-up token, a wrong credential) spends
// the allowance.
//
// An IPv6 source counts by its /64, which one host usually holds whole:
// otherwise each of its 2^64 addresses would get an allowance of its own.
type failureLimiter struct {
	every time.Duration
	burst int
	max   int // entries kept; beyond it the oldest idle ones go

	mu    sync.Mutex
	peers map[string]*peerLimit
}

type peerLimit struct {
	// tokens is the allowance at the time at, refilled by one per every
	// up to burst; held is the part of it that attempts in flight hold
	// (begin). settled is closed (and replaced) whenever one settles.
	tokens  float64
	at      time.Time
	held    int
	last    time.Time
	settled chan struct{}
}

// refill brings p's allowance up to now.
func (p *peerLimit) refill(f *failureLimiter, now time.Time) {
	if now.After(p.at) {
		p.tokens = min(float64(f.burst), p.tokens+float64(now.Sub(p.at))/float64(f.every))
		p.at = now
	}
}

// free is the allowance no attempt in flight holds.
func (p *peerLimit) free() float64 { return p.tokens - float64(p.held) }

// waitFor is how long until p has one unit free, were nothing held.
func (p *peerLimit) waitFor(f *failureLimiter) time.Duration {
	return time.Duration((1 - p.tokens) * float64(f.every))
}

func newFailureLimiter(every time.Duration, burst int) *failureLimiter {
	return &failureLimiter{every: every, burst: burst, max: 10000, peers: map[string]*peerLimit{}}
}

// limitKey is what addr's allowance is kept under: the address itself, or
// for IPv6 its /64.
func limitKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Is4() || a.Is4In6() {
		return addr
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// peer returns addr's entry, creating it; f.mu is held.
func (f *failureLimiter) peer(addr string, now time.Time) *peerLimit {
	key := limitKey(addr)
	p := f.peers[key]
	if p == nil {
		if len(f.peers) >= f.max {
			f.evict(now)
		}
		p = &peerLimit{tokens: float64(f.burst), at: now, settled: make(chan struct{})}
		f.peers[key] = p
	}
	p.last = now
	p.refill(f, now)
	return p
}

// take spends one failure allowance of addr, atomically: for a failure
// already known (a wrong password on the registry). ok is false when addr
// has none left (nothing is spent then) and wait says when it may try
// again.
func (f *failureLimiter) take(addr string, now time.Time) (ok bool, wait time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.peer(addr, now)
	if p.free() < 1 {
		return false, p.waitFor(f)
	}
	p.tokens--
	return true, 0
}

// errThrottled: addr has no allowance left and nothing of its in flight
// could give one back.
type errThrottled struct{ wait time.Duration }

func (e *errThrottled) Error() string { return "too many failed attempts" }

// begin admits one attempt of addr whose outcome is not known yet (a
// join): it holds one unit of addr's allowance for the attempt, which
// settle then spends (a failure) or gives back (anything else). Holding
// the allowance bounds the guesses of one address that can be in flight,
// and so the overshoot of concurrent wrong guesses, by what it has left,
// while an attempt that finds every unit held by attempts in flight waits
// for one of them to settle instead of being refused: a burst of valid
// joins from one address (a site behind NAT) queues and succeeds.
//
// begin returns *errThrottled when addr has no allowance left and nothing
// in flight, or ctx's error when it ends first.
func (f *failureLimiter) begin(ctx context.Context, addr string, now func() time.Time) (*attemptTicket, error) {
	for {
		t := now()
		f.mu.Lock()
		p := f.peer(addr, t)
		if p.free() >= 1 {
			p.held++
			f.mu.Unlock()
			return &attemptTicket{f: f, p: p}, nil
		}
		if p.held == 0 {
			f.mu.Unlock()
			return nil, &errThrottled{wait: p.waitFor(f)}
		}
		settled := p.settled
		f.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// attemptTicket is one attempt admitted by begin.
type attemptTicket struct {
	f    *failureLimiter
	p    *peerLimit
	done bool
}

// settle ends the attempt: failed spends the unit it held, otherwise it
// is given back. Only the first call counts.
func (a *attemptTicket) settle(failed bool) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	a.p.held--
	if failed {
		a.p.tokens--
	}
	close(a.p.settled)
	a.p.settled = make(chan struct{})
}

// evict drops idle peers whose bucket has refilled; if none has, the
// least recently seen idle one. A peer with attempts in flight stays.
func (f *failureLimiter) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for a, p := range f.peers {
		if p.held > 0 {
			continue
		}
		if p.refill(f, now); p.tokens >= float64(f.burst) {
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
