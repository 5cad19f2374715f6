package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"strings"
	"sync"
	"time"
)

// sizeUnits are the units ParseSize accepts, case-insensitively: SI
// (powers of 1000) and IEC (powers of 1024), with or without the "B".
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
	"gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseSize reads a byte count such as "40GiB", "500MB", "1.5GB", "100MiB"
// or "1048576". Fractions of a byte are dropped.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	if num == "" || num == "." || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("invalid size %q: want a number followed by a unit, such as 40GiB or 500MB", s)
	}
	if len(num) > 40 {
		return 0, fmt.Errorf("invalid size %q: number too long", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: bad number %q", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // truncates: whole bytes
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n.Int64(), nil
}

// FormatSize prints n bytes with an IEC unit, e.g. "1.5 GiB".
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := math.Abs(float64(n)), 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	if n < 0 {
		v = -v
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp-1])
}

// usage is the registry's storage usage as a running counter: a walk of
// the storage directory at start, after each collection and periodically,
// plus the bytes uploads write in between. A request costs a mutex, never
// a walk; only a request that the counter would refuse triggers a fresh
// walk first (at most every refreshMin), so that a counter that
// over-counts (an upload deduplicated on commit, a cancelled upload) does
// not refuse what fits.
type usage struct {
	root       string
	quota      int64 // bytes; 0: no quota
	now        func() time.Time
	refreshMin time.Duration

	walkMu   sync.Mutex // one walk at a time
	mu       sync.Mutex
	base     int64 // the last walk
	delta    int64 // bytes written (or removed) since it started
	reserved int64 // bytes in-flight requests may still write
	walkedAt time.Time
	size     func(root string) int64
	counted  chan struct{} // closed when the first walk is done
	once     sync.Once

	// On a bucket with a quota, the other replicas' writes (quotashared.go).
	sh   *sharedQuota
	cum  int64 // net bytes counted as written since start (published)
	free int64 // granted to this replica, not reserved by a request yet
}

// newUsage starts the first walk in the background: it grows with the
// store (1.6 s at 105k files) and the server answers meanwhile. Until it
// is done, usage is not known, and the counter is conservative by waiting:
// used() and every reservation under a quota wait for it (pulls, deletes
// and uploads without a quota do not); nothing is refused for a usage
// that has not been counted.
func newUsage(root string, quota int64, now func() time.Time) *usage {
	return newUsageSized(root, quota, now, DirSize)
}

// newUsageOn is newUsage on either storage: on a bucket the walk sums
// the objects' sizes (one listing per 1000 objects).
//
// With a quota on a bucket, the replicas share what they write between
// walks through the state store (quotashared.go).
func newUsageOn(st *imageStorage, quota int64, now func() time.Time, log *slog.Logger) *usage {
	if st.local() {
		return newUsage(st.root, quota, now)
	}
	u := &usage{root: "/", quota: quota, now: now, refreshMin: 5 * time.Second, counted: make(chan struct{})}
	u.size = func(string) int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		return st.total(ctx)
	}
	if quota > 0 {
		u.sh = newSharedQuota(st.store, now, log)
	}
	go u.walk()
	return u
}

// newUsageSized is newUsage counting with size (tests slow it down).
func newUsageSized(root string, quota int64, now func() time.Time, size func(string) int64) *usage {
	u := &usage{root: root, quota: quota, now: now, refreshMin: 5 * time.Second, size: size, counted: make(chan struct{})}
	go u.walk()
	return u
}

// waitCounted blocks until the first walk is done.
func (u *usage) waitCounted() { <-u.counted }

// walk recounts the storage directory. Bytes written while it runs may be
// counted twice until the next walk: the counter errs high, never low.
func (u *usage) walk() {
	u.walkMu.Lock()
	defer u.walkMu.Unlock()
	if u.sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
		u.sh.snapshot(ctx)
		cancel()
	}
	u.mu.Lock()
	start := u.delta
	u.mu.Unlock()
	n := u.size(u.root)
	u.mu.Lock()
	u.base, u.delta, u.walkedAt = n, u.delta-start, u.now()
	u.mu.Unlock()
	u.once.Do(func() { close(u.counted) })
}

// used is the current storage usage in bytes.
func (u *usage) used() int64 {
	u.waitCounted()
	var others int64
	if u.sh != nil {
		others = u.sh.cachedOthers()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.base + u.delta + others
}

func (u *usage) tryReserve(n int64) bool {
	if u.sh != nil && u.quota > 0 {
		return u.tryReserveShared(n)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.quota > 0 && u.base+u.delta+u.reserved+n > u.quota {
		return false
	}
	u.reserved += n
	return true
}

// reserve sets n bytes aside for a request, or reports false when they
// would take usage over the quota.
func (u *usage) reserve(n int64) bool {
	if u.quota > 0 {
		u.waitCounted()
	}
	if u.tryReserve(n) {
		return true
	}
	u.mu.Lock()
	stale := u.now().Sub(u.walkedAt) >= u.refreshMin
	u.mu.Unlock()
	if !stale {
		return false
	}
	u.walk()
	return u.tryReserve(n)
}

// written turns n reserved bytes into used ones.
func (u *usage) written(n int64) {
	u.mu.Lock()
	u.reserved -= n
	u.delta += n
	u.cum += n
	u.mu.Unlock()
}

func (u *usage) release(n int64) {
	u.mu.Lock()
	u.reserved -= n
	if u.sh != nil {
		u.free += n // still granted to this replica
	}
	u.mu.Unlock()
}

// add corrects the counter by n bytes (negative: removed).
func (u *usage) add(n int64) {
	u.mu.Lock()
	u.delta += n
	u.cum += n
	u.mu.Unlock()
}

// tryReserveShared reserves n bytes out of this replica's grant, taking a
// new grant from the shared quota when it does not hold enough.
func (u *usage) tryReserveShared(n int64) bool {
	u.sh.grantMu.Lock()
	defer u.sh.grantMu.Unlock()
	u.mu.Lock()
	if u.free >= n {
		u.free -= n
		u.reserved += n
		u.mu.Unlock()
		return true
	}
	need := n - u.free
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancel()
	for _, g := range []int64{max(need, quotaGrant), need} {
		u.mu.Lock()
		cum, granted := u.cum, u.reserved+u.free
		u.mu.Unlock()
		// Publish first, then read the others (see quotashared.go).
		if err := u.sh.publish(ctx, cum, granted+g, true); err != nil {
			u.sh.log.Error("quota: taking a grant", "err", err)
			return false
		}
		all, err := u.sh.readOthers(ctx)
		if err == nil {
			others := u.sh.othersUse(all)
			u.mu.Lock()
			if u.base+u.delta+u.reserved+u.free+g+others <= u.quota {
				u.free += g - n
				u.reserved += n
				u.mu.Unlock()
				return true
			}
			u.mu.Unlock()
		} else {
			u.sh.log.Error("quota: taking a grant", "err", err)
		}
		u.mu.Lock()
		cum, granted = u.cum, u.reserved+u.free
		u.mu.Unlock()
		if perr := u.sh.publish(ctx, cum, granted, true); perr != nil {
			u.sh.log.Warn("quota: giving back a grant (counted against the quota until this replica publishes again)", "err", perr)
		}
		if err != nil || g == need {
			break
		}
	}
	return false
}

// flushShared publishes this replica's share: what it wrote since the
// last time, and its grant, given back when no request holds any of it.
func (u *usage) flushShared(ctx context.Context) error {
	if u.sh == nil {
		return nil
	}
	u.sh.grantMu.Lock()
	defer u.sh.grantMu.Unlock()
	u.mu.Lock()
	if u.reserved == 0 {
		u.free = 0
	}
	cum, granted := u.cum, u.reserved+u.free
	u.mu.Unlock()
	return u.sh.publish(ctx, cum, granted, false)
}

// flushLoop publishes this replica's share every quotaFlush.
func (u *usage) flushLoop(ctx context.Context) {
	if u.sh == nil {
		return
	}
	t := time.NewTicker(quotaFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
		if err := u.flushShared(fctx); err != nil {
			u.sh.log.Warn("quota: publishing this replica's storage use", "err", err)
		}
		cancel()
	}
}

// quotaError is the message a refused upload gets: the quota is full.
// dropped is what the refusal removes (the upload session's data so far),
// so that the usage shown is the usage that remains.
func (u *usage) quotaError(adding, dropped int64, stopped bool) string {
	used := u.used() - dropped
	what := fmt.Sprintf("this upload needs %s more", FormatSize(adding))
	if stopped {
		what = fmt.Sprintf("the upload was stopped after %s", FormatSize(adding))
	}
	return fmt.Sprintf("storage quota full: %s of %s used (%d of %d bytes); %s. Delete images and run garbage collection to free space",
		FormatSize(used), FormatSize(u.quota), used, u.quota, what)
}

// errQuotaExceeded ends the body of an upload that crossed the quota.
var errQuotaExceeded = errors.New("storage quota exceeded")

// uploadAccount is one request's share of the counter.
type uploadAccount struct {
	u        *usage
	held     int64 // reserved, not yet written
	read     int64 // body bytes that went through
	exceeded bool  // the body crossed the quota and was cut
}

// reserveSlack is how much a streamed upload reserves ahead, so that the
// counter's mutex is taken once per MiB rather than once per read.
const reserveSlack = 1 << 20

func (a *uploadAccount) reserve(n int64) bool {
	if !a.u.reserve(n) {
		return false
	}
	a.held += n
	return true
}

// consume accounts n body bytes, reserving more when they exceed what the
// request holds; false when the quota does not allow them.
func (a *uploadAccount) consume(n int64) bool {
	if n > a.held {
		need := n - a.held
		if !a.reserve(max(need, reserveSlack)) && !a.reserve(need) {
			return false
		}
	}
	a.held -= n
	a.read += n
	a.u.written(n)
	return true
}

// done gives back what the request reserved and did not write.
func (a *uploadAccount) done() {
	a.u.release(a.held)
	a.held = 0
}

// quotaReader counts an upload body against the quota and cuts it when it
// crosses it.
type quotaReader struct {
	body interface {
		Read([]byte) (int, error)
		Close() error
	}
	acct *uploadAccount
	err  error // the body's read error other than its end: it was cut
}

func (q *quotaReader) Read(p []byte) (int, error) {
	if q.acct.exceeded {
		return 0, errQuotaExceeded
	}
	n, err := q.body.Read(p)
	if n > 0 && !q.acct.consume(int64(n)) {
		q.acct.exceeded = true
		return 0, errQuotaExceeded
	}
	if err != nil && err != io.EOF {
		q.err = err
	}
	return n, err
}

func (q *quotaReader) Close() error { return q.body.Close() }
