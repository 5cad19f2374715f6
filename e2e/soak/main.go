// Command soak pushes, pulls (every digest verified), moves tags, deletes
// and collects garbage against a real edgecrd while it SIGKILLs and
// restarts it at random moments, keeps a ledger of what the server
// acknowledged, and ends with a check that every listed tag resolves to a
// whole image and that every acknowledged, not deleted, tag pulls whole.
//
//	go run ./e2e/soak -duration 3m -kill-every 15s
//
// It prints a table of operations by kind and result and exits non-zero on
// any failure outside a kill window, any lost or unresolvable tag.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil/s3bucket"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

type options struct {
	duration    time.Duration
	killEvery   time.Duration
	gcEvery     time.Duration
	gcGrace     time.Duration
	workers     int
	maxSize     int64
	edgecrd     string
	keep        bool
	storage     string // "dir" or "s3"
	quota       string
	fleet       bool
	sampleEvery time.Duration
}

func (o options) storageName() string {
	if o.storage == "s3" {
		return "S3 (MinIO)"
	}
	return "a data dir"
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "how long to run the load")
	flag.DurationVar(&o.killEvery, "kill-every", 15*time.Second, "mean interval between SIGKILLs of edgecrd (uniform in [0.5, 1.5] of it); 0: never")
	flag.DurationVar(&o.gcEvery, "gc-every", 30*time.Second, "interval between `edgecrd gc` runs; 0: never")
	flag.DurationVar(&o.gcGrace, "gc-grace", time.Minute, "--grace of those runs")
	flag.IntVar(&o.workers, "workers", 4, "concurrent clients, one repository each")
	flag.Int64Var(&o.maxSize, "max-layer", 256<<10, "largest layer in bytes")
	flag.StringVar(&o.edgecrd, "edgecrd", "", "edgecrd binary to test (default: build ./cmd/edgecrd)")
	flag.BoolVar(&o.keep, "keep", false, "keep the data dir and log")
	flag.StringVar(&o.storage, "storage", "dir", "where the device keeps its state: dir (a data dir) or s3 (a bucket on the pinned MinIO, which is SIGKILLed too)")
	flag.StringVar(&o.quota, "quota", "32MiB", "edgecrd serve --quota (a refusal at the quota is an expected answer); \"\": none")
	flag.BoolVar(&o.fleet, "fleet", true, "also create tokens, join and leave sandboxed clients with edgecr, revoke them and remove tokens")
	flag.DurationVar(&o.sampleEvery, "sample-every", 10*time.Second, "interval between RSS and open-fd samples of edgecrd (and MinIO)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) (bool, error) {
	if o.workers < 1 {
		return false, fmt.Errorf("invalid -workers %d: want at least 1", o.workers)
	}
	if o.storage != "dir" && o.storage != "s3" {
		return false, fmt.Errorf("invalid -storage %q: want dir or s3", o.storage)
	}
	dir, err := os.MkdirTemp("", "edgecr-soak-")
	if err != nil {
		return false, fmt.Errorf("creating work dir: %w", err)
	}
	if o.keep {
		fmt.Fprintf(out, "work dir: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	binDir, err := buildBinaries(ctx, dir, o.edgecrd == "")
	if err != nil {
		return false, err
	}
	bin := o.edgecrd
	if bin == "" {
		bin = filepath.Join(binDir, "edgecrd")
	}
	var m *kvtest.MinIO
	storage, env := "", os.Environ()
	if o.storage == "s3" {
		b, err := s3bucket.Start(ctx, dir, "edgecr-soak")
		if err != nil {
			return false, err
		}
		defer b.Stop()
		m, storage, env = b.MinIO, b.Storage, b.Env
	}
	dev, err := newDevice(ctx, bin, dir, storage, env, o.quota)
	if err != nil {
		return false, err
	}
	st := newStats()
	if o.storage == "s3" {
		st.fdSlack += s3PoolSlack
	}
	l := newLedger()
	// Workers hold gate for reading during an operation; after each
	// restart the check holds it for writing: a quiescent moment, in which
	// every listed tag must resolve and the ledger must hold.
	var gate sync.RWMutex
	startup, err := dev.start(ctx)
	if err != nil {
		return false, err
	}
	defer dev.kill()
	st.startup(startup)
	cl := newClient(dev)
	var fl *fleet
	if o.fleet {
		fl = newFleet(dev, binDir, filepath.Join(dir, "clients"), l, st, &gate)
		if o.storage == "s3" {
			fl.revokeBound = 2 * time.Second // edgecrd clients revoke --help: every replica within 2 s
		}
	}
	pids := map[string]func() int{"edgecrd": dev.pid}
	if m != nil {
		pids["minio"] = m.Pid
	}

	repos := make([]string, o.workers)
	for i := range repos {
		repos[i] = fmt.Sprintf("soak/w%d", i)
	}
	loadCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{repo: repos[i], cl: cl, l: l, st: st, o: o, gate: &gate,
				rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
			w.run(loadCtx)
		}()
	}
	if fl != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fl.run(loadCtx)
		}()
	}
	if o.sampleEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.sampleEvery(loadCtx, o.sampleEvery, pids)
		}()
	}
	var fatal error
	var fatalMu sync.Mutex
	setFatal := func(err error) {
		fatalMu.Lock()
		defer fatalMu.Unlock()
		if fatal == nil {
			fatal = err
			cancel()
		}
	}
	if o.gcEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sleep(loadCtx, o.gcEvery) {
				start := time.Now()
				err := dev.gc(ctx, o.gcGrace)
				st.record("gc", l, start, err)
			}
		}()
	}
	if o.killEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 99))
			for sleep(loadCtx, time.Duration(float64(o.killEvery)*(0.5+rnd.Float64()))) {
				var err error
				if m != nil && rnd.IntN(3) == 0 {
					err = killMinIO(ctx, m, cl, l, st, repos)
				} else {
					err = killAndRestart(ctx, dev, l, st)
				}
				if err != nil {
					setFatal(err)
					return
				}
				gate.Lock()
				st.checked(fullCheck(ctx, cl, l, fl))
				gate.Unlock()
			}
		}()
	}
	wg.Wait()
	if fatal != nil {
		return false, fatal
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	// One last kill, so that the check reads what a restart finds on disk,
	// right after the restart: nothing may depend on the repair.
	if o.killEvery > 0 {
		if err := killAndRestart(ctx, dev, l, st); err != nil {
			return false, err
		}
	}
	fc := fullCheck(ctx, cl, l, fl)
	fc.repairs = cl.repairs(ctx)
	st.print(out, fc, o)
	return st.passed(fc), nil
}

func killAndRestart(ctx context.Context, dev *device, l *ledger, st *stats) error {
	l.killStarts(time.Now())
	dev.kill()
	took, err := dev.start(ctx)
	if err != nil {
		return err
	}
	// A request already sent when /v2/ answered may still fail on the old
	// connection: keep the window open a little longer.
	time.Sleep(200 * time.Millisecond)
	l.killEnds(time.Now())
	st.kill("kill+restart", took)
	return nil
}

// killMinIO SIGKILLs MinIO and restarts it on the same port and data; the
// kill window lasts until edgecrd serves from the bucket again (an
// authenticated GET /v2/ and every worker repository's tag list answer),
// plus a second for requests already sent. Its row's time is MinIO's
// restart plus edgecrd's recovery.
func killMinIO(ctx context.Context, m *kvtest.MinIO, cl *client, l *ledger, st *stats, repos []string) error {
	l.killStarts(time.Now())
	m.Stop()
	start := time.Now()
	if err := m.Start(ctx); err != nil {
		return err
	}
	serving := func() bool {
		if !cl.authOK(ctx) {
			return false
		}
		for _, r := range repos {
			if _, err := cl.tags(ctx, r); err != nil {
				return false
			}
		}
		return true
	}
	for !serving() {
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("edgecrd does not serve from the bucket 5 minutes after MinIO was restarted")
		}
	}
	took := time.Since(start)
	time.Sleep(time.Second)
	l.killEnds(time.Now())
	st.kill("kill+restart minio", took)
	return nil
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
