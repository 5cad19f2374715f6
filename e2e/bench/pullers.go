package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/e2e/benchutil/s3bucket"
)

// The pullers benchmark (-pullers 5,50, issue 14): one image of 10 layers
// (-size in all, default 100MiB) is pushed to a fresh edgecrd, then each
// count of pullers pulls it at once, each over its own connection (as many
// machines would): the manifest, then every layer, digest-verified while
// streaming. Reported per count: the wall time until the last puller
// finished, the aggregate throughput and its ratio to the first count's,
// failures, and the highest RSS of edgecrd sampled every 50 ms.

type pullersResult struct {
	n        int
	wall     time.Duration
	bytes    int64
	failures int
	firstErr string
	maxRSS   int64
}

func runPullers(ctx context.Context, fs *flag.FlagSet, o options, counts string, args []string, stdout, stderr io.Writer) int {
	var ns []int
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 500 {
			fmt.Fprintf(stderr, "bench: -pullers %q: want counts from 1 to 500, comma-separated (5,50)\n", counts)
			return 2
		}
		ns = append(ns, n)
	}
	size := int64(100 << 20)
	if sizeSet(fs) {
		var err error
		if size, err = parseSize(o.size); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
	}
	p, err := parseProto(o.proto)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	started, load := time.Now(), benchutil.LoadAverage()
	rs, err := benchPullers(ctx, o.edgecrd, o.storage, p, ns, size, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	runHead(stdout, started, load, args)
	fmt.Fprintf(stdout, "- Storage: %s\n\n", storageName(o.storage))
	fmt.Fprintf(stdout, "| Pullers of one %s image (10 layers) | Wall time | Aggregate | vs %d pullers | Failed pullers | edgecrd RSS, highest sample |\n", approxBytes(size), rs[0].n)
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	failed := false
	for _, r := range rs {
		agg := float64(r.bytes) / r.wall.Seconds() / 1e6
		base := float64(rs[0].bytes) / rs[0].wall.Seconds() / 1e6
		fmt.Fprintf(stdout, "| %d | %s | %.0f MB/s | %.2f× | %d | %s |\n", r.n, r.wall.Round(time.Millisecond), agg, agg/base, r.failures, approxBytes(r.maxRSS))
		if r.failures > 0 {
			failed = true
			fmt.Fprintf(stdout, "\n%d pullers: first failure: %s\n", r.n, r.firstErr)
		}
	}
	if failed {
		return 1
	}
	return 0
}

func benchPullers(ctx context.Context, bin, storage string, p proto, counts []int, size int64, progress io.Writer) (rs []pullersResult, err error) {
	tmp, bin, err := benchDir(ctx, "edgecr-bench-pullers-", bin, progress)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var b *s3bucket.Bucket
	if storage == "s3" {
		if b, err = s3bucket.Start(ctx, tmp, "edgecr-bench"); err != nil {
			return nil, err
		}
		defer b.Stop()
	}
	e, err := startEdgecrdOn(ctx, bin, tmp, b)
	if e != nil {
		defer func() { err = errors.Join(err, e.stop()) }()
	}
	if err != nil {
		return nil, err
	}
	tgt := target{base: e.base, user: e.user, password: e.password, roots: e.roots}
	c := newClient(tgt, p)
	const repo, tag, layers = "bench/pullers", "v1", 10
	layerSize := size / layers
	fmt.Fprintf(progress, "pushing %d layers of %s\n", layers, approxBytes(layerSize))
	var digests []string
	for i := range layers {
		t, err := c.push(ctx, repo, uint64(7000+i), layerSize)
		if err != nil {
			return nil, err
		}
		digests = append(digests, t.digest)
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, err := c.pushSmall(ctx, repo, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.putManifest(ctx, repo, tag, manifestJSON(cd, int64(len(cfg)), "", 0, digests, layerSize)); err != nil {
		return nil, err
	}
	c.close()

	for _, n := range counts {
		fmt.Fprintf(progress, "%d pullers\n", n)
		r := pullersResult{n: n}
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = newClient(tgt, p)
		}
		stopRSS := make(chan struct{})
		rssDone := make(chan int64)
		go func() {
			var hi int64
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				if v, err := currentRSS(e.pid()); err == nil && v > hi {
					hi = v
				}
				select {
				case <-stopRSS:
					rssDone <- hi
					return
				case <-t.C:
				}
			}
		}()
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for _, pc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got int64
				err := func() error {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, pc.base+"/v2/"+repo+"/manifests/"+tag, nil)
					if err != nil {
						return err
					}
					req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
					req.SetBasicAuth(pc.user, pc.password)
					resp, err := pc.hc.Do(req)
					if err != nil {
						return fmt.Errorf("getting the manifest: %w", err)
					}
					drain(resp)
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("getting the manifest: %s", resp.Status)
					}
					for _, d := range digests {
						t, err := pc.pull(ctx, repo, d, layerSize)
						if err != nil {
							return err
						}
						got += t.bytes
					}
					return nil
				}()
				mu.Lock()
				r.bytes += got
				if err != nil {
					r.failures++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		r.wall = time.Since(start)
		close(stopRSS)
		r.maxRSS = <-rssDone
		for _, pc := range clients {
			pc.close()
		}
		rs = append(rs, r)
	}
	return rs, nil
}
