package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// config is what a benchmark run measures.
type config struct {
	edgecrd string // binary; built from this module when empty
	size    int64  // blob bytes
	n       int    // GET /v2/ requests per target
	runs    int    // runs of each throughput measurement
	proto   proto
}

// results are the measurements of one benchmark run.
type results struct {
	cfg        config
	started    time.Time
	push, pull []transfer
	rss        int64 // edgecrd's VmHWM after the pushes, bytes
	rssErr     error // why rss is missing
	edgecrd    latency
	htpasswd   latency
	noauth     latency
	serverTime time.Duration // edgecrd's own mean handling time of GET /v2/; 0 if unknown
	loadStart  string        // 1-minute load average before the run
}

const repo = "bench/blob"

// runBench measures edgecrd and the distribution baselines. Everything it
// starts (the edgecrd child, the in-process registries, the temp dir) is
// stopped and removed before it returns, also on error and cancellation.
func runBench(ctx context.Context, cfg config, progress io.Writer) (res *results, err error) {
	res = &results{cfg: cfg, started: time.Now(), loadStart: benchutil.LoadAverage()}
	if l, err := strconv.ParseFloat(res.loadStart, 64); err == nil && l > 0.5 {
		fmt.Fprintf(progress, "warning: load average %s: other work on this machine will skew the numbers\n", res.loadStart)
	}
	tmp, err := os.MkdirTemp("", "edgecr-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rerr))
		}
	}()

	bin := cfg.edgecrd
	if bin == "" {
		fmt.Fprintln(progress, "building edgecrd")
		if bin, err = buildEdgecrd(ctx, tmp); err != nil {
			return nil, err
		}
	}
	if err := measureEdgecrd(ctx, cfg, bin, tmp, res, progress); err != nil {
		return nil, err
	}
	if err := measureBaseline(ctx, cfg, filepath.Join(tmp, "htpasswd"), true, &res.htpasswd, progress); err != nil {
		return nil, fmt.Errorf("measuring distribution with htpasswd: %w", err)
	}
	if err := measureBaseline(ctx, cfg, filepath.Join(tmp, "noauth"), false, &res.noauth, progress); err != nil {
		return nil, fmt.Errorf("measuring distribution without auth: %w", err)
	}
	return res, nil
}

// measureEdgecrd starts a fresh edgecrd, pushes cfg.runs blobs, reads its
// peak RSS, pulls each blob back, and times GET /v2/.
func measureEdgecrd(ctx context.Context, cfg config, bin, dir string, res *results, progress io.Writer) (err error) {
	fmt.Fprintln(progress, "starting edgecrd")
	e, err := startEdgecrd(ctx, bin, dir)
	if e != nil {
		defer func() { err = errors.Join(err, e.stop()) }()
	}
	if err != nil {
		return err
	}
	// An error while edgecrd is down is explained by its log.
	defer func() {
		select {
		case <-e.exited:
			if err != nil {
				err = fmt.Errorf("%w\nedgecrd exited: %v\n%s", err, e.waitErr, benchutil.LogTail(e.logPath))
			}
		default:
		}
	}()

	c := newClient(target{base: e.base, user: e.user, password: e.password, roots: e.roots}, cfg.proto)
	defer c.close()
	for i := range cfg.runs {
		cpu := e.cpuMeter()
		t, err := c.push(ctx, repo, uint64(i+1), cfg.size)
		if err != nil {
			return fmt.Errorf("pushing blob (run %d): %w", i+1, err)
		}
		t.serverCPU, t.serverCPUOK = cpu()
		fmt.Fprintf(progress, "push %d/%d: %s\n", i+1, cfg.runs, t)
		res.push = append(res.push, t)
	}
	res.rss, res.rssErr = peakRSS(e.pid())
	for i, p := range res.push {
		cpu := e.cpuMeter()
		t, err := c.pull(ctx, repo, p.digest, p.bytes)
		if err != nil {
			return fmt.Errorf("pulling blob (run %d): %w", i+1, err)
		}
		t.serverCPU, t.serverCPUOK = cpu()
		fmt.Fprintf(progress, "pull %d/%d: %s\n", i+1, cfg.runs, t)
		res.pull = append(res.pull, t)
	}
	c.close()

	// A new client: the latency connection has carried nothing else.
	lc := newClient(c.target, cfg.proto)
	defer lc.close()
	fmt.Fprintf(progress, "GET /v2/ x%d: edgecrd\n", cfg.n)
	if res.edgecrd, err = lc.pingLatency(ctx, cfg.n); err != nil {
		return fmt.Errorf("timing GET /v2/ on edgecrd: %w", err)
	}
	if res.serverTime, err = lc.serverTime(ctx); err != nil {
		fmt.Fprintln(progress, "warning:", err) // an explanation, not a measurement
	}
	return nil
}

// measureBaseline times GET /v2/ on an in-process distribution registry.
func measureBaseline(ctx context.Context, cfg config, dir string, withAuth bool, out *latency, progress io.Writer) (err error) {
	b, err := startBaseline(ctx, dir, withAuth)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.stop()) }()
	c := newClient(target{base: b.base, user: b.user, password: b.password, roots: b.roots}, cfg.proto)
	defer c.close()
	name := "distribution, no auth"
	if withAuth {
		name = "distribution + htpasswd"
	}
	fmt.Fprintf(progress, "GET /v2/ x%d: %s\n", cfg.n, name)
	*out, err = c.pingLatency(ctx, cfg.n)
	return err
}
