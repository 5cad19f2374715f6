package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// sample is one reading of a process's resident set and open file
// descriptors (Linux /proc).
type sample struct {
	at   time.Time
	proc string // "edgecrd" or "minio"
	pid  int
	rss  int64 // bytes
	fds  int
}

// readProc reads pid's VmRSS and counts its /proc/PID/fd entries.
func readProc(pid int) (rss int64, fds int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parsing VmRSS of process %d: %q", pid, line)
			}
			rss = kb << 10
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	return rss, len(ents), nil
}

// sampleEvery reads each process of pids every d until ctx ends. A
// process being restarted (pid 0) or gone between the pid and the read is
// skipped: the next sample finds its successor.
func (s *stats) sampleEvery(ctx context.Context, d time.Duration, pids map[string]func() int) {
	for sleep(ctx, d) {
		for name, pid := range pids {
			p := pid()
			if p == 0 {
				continue
			}
			rss, fds, err := readProc(p)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.samples = append(s.samples, sample{at: time.Now(), proc: name, pid: p, rss: rss, fds: fds})
			s.mu.Unlock()
		}
	}
}

// flatness is the resource check of one process: the mean of the last
// quarter of its samples against the mean of the first quarter, over the
// whole run (processes restarted by faults included: their samples are at
// comparable ages, so growth across lifetimes is growth of what a start
// loads) and within each lifetime long enough to have 8 samples.
type flatness struct {
	proc                 string
	n, lifetimes         int
	rssFirst, rssLast    float64
	fdsFirst, fdsLast    float64
	rssMax               int64
	fdsMax               int
	flat                 bool
	judged               bool // false: shown only (MinIO)
	notFlat              []string
	longest, longestFlat int // samples of the longest lifetime; lifetimes checked
}

// minFlatSamples is the fewest samples judged (a run, a lifetime): two a
// quarter, so that one sample of a process just started is not the whole
// first quarter.
const minFlatSamples = 8

// flatTolerance is how much the last quarter may exceed the first.
const flatTolerance = 0.10

// fdSlack is how many more open fds than the first quarter's mean the
// last quarter may hold beyond flatTolerance: the soak's own connections
// (workers, fleet, probes, checks), open or not at the moment of a sample.
// A leak grows past any constant; connections in use do not.
const fdSlack = 8.0

// s3PoolSlack is added on a bucket: edgecrd keeps up to 64 idle
// connections to the object store (server/kv/s3.go, MaxIdleConnsPerHost)
// and closes them after 90 s idle, so a young process (and under kills
// every process is young) holds more than one that has idled.
const s3PoolSlack = 64.0

func quarters(xs []float64) (first, last float64) {
	q := len(xs) / 4
	mean := func(v []float64) float64 {
		t := 0.0
		for _, x := range v {
			t += x
		}
		return t / float64(len(v))
	}
	return mean(xs[:q]), mean(xs[len(xs)-q:])
}

// rssSlack is how much more resident memory than the first quarter's mean
// the last quarter may hold beyond flatTolerance. Go's collector lets the
// heap grow to twice what is live before it collects (GOGC=100), and under
// kills every ~15 s each sample is of a process of another age, so a
// 3-minute run of a 35 MiB process swings by more than 10 %: CI's soak
// judged a 33.8 to 40.6 MiB swing over ten lifetimes a leak. A leak grows
// past any constant over a long run (docs/soak.md); the heap's cycle does
// not.
const rssSlack = 16 << 20

func grew(first, last float64) bool { return last > first*(1+flatTolerance) }

func grewRSS(first, last float64) bool { return grew(first, last) && last > first+rssSlack }

func grewFds(first, last, slack float64) bool { return grew(first, last) && last > first+slack }

func checkFlat(proc string, all []sample, slack float64) *flatness {
	f := &flatness{proc: proc, flat: true, judged: true}
	var rss, fds []float64
	byPid := map[int][]sample{}
	var order []int
	for _, s := range all {
		if s.proc != proc {
			continue
		}
		rss = append(rss, float64(s.rss))
		fds = append(fds, float64(s.fds))
		f.rssMax = max(f.rssMax, s.rss)
		f.fdsMax = max(f.fdsMax, s.fds)
		if byPid[s.pid] == nil {
			order = append(order, s.pid)
		}
		byPid[s.pid] = append(byPid[s.pid], s)
	}
	f.n, f.lifetimes = len(rss), len(order)
	if f.n < minFlatSamples {
		return f // too few to judge (a quarter of one or two samples); the report says so
	}
	f.rssFirst, f.rssLast = quarters(rss)
	f.fdsFirst, f.fdsLast = quarters(fds)
	if grewRSS(f.rssFirst, f.rssLast) {
		f.notFlat = append(f.notFlat, fmt.Sprintf("%s RSS over the run: last quarter %s, first %s", proc, mib(f.rssLast), mib(f.rssFirst)))
	}
	if grewFds(f.fdsFirst, f.fdsLast, slack) {
		f.notFlat = append(f.notFlat, fmt.Sprintf("%s open fds over the run: last quarter %.1f, first %.1f", proc, f.fdsLast, f.fdsFirst))
	}
	for _, pid := range order {
		life := byPid[pid]
		f.longest = max(f.longest, len(life))
		if len(life) < minFlatSamples {
			continue
		}
		f.longestFlat++
		var r, d []float64
		for _, s := range life {
			r = append(r, float64(s.rss))
			d = append(d, float64(s.fds))
		}
		if a, b := quarters(r); grewRSS(a, b) {
			f.notFlat = append(f.notFlat, fmt.Sprintf("%s pid %d RSS: last quarter %s, first %s", proc, pid, mib(b), mib(a)))
		}
		if a, b := quarters(d); grewFds(a, b, slack) {
			f.notFlat = append(f.notFlat, fmt.Sprintf("%s pid %d open fds: last quarter %.1f, first %.1f", proc, pid, b, a))
		}
	}
	f.flat = len(f.notFlat) == 0
	return f
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
