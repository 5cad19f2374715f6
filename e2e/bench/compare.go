package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// The registry comparison (-compare): edgecrd, distribution and zot side by
// side in one run, each a process of its own on loopback TLS, plus a plain
// Go TLS server streaming the same bytes from the page cache (the copy
// limit a pull is measured against). Every round visits the servers in a
// rotated order, once per HTTP version, so that a change in the machine's
// state (other work, page-cache memory) spreads over all of them and the
// ratios within the run mean something; the table shows medians.

// compareConfig is what a comparison measures.
type compareConfig struct {
	edgecrd, zot string
	edgecrdB     string  // another edgecrd build, measured as "edgecrd B" (A/B of a change)
	zotCommit    bool    // also measure zot with its fsync on ("zot, commit")
	size         int64   // blob bytes
	runs         int     // rounds
	n            int     // GET /v2/ per server, protocol and round
	cost         int     // bcrypt cost of the anchors' htpasswd
	protos       []proto // measured separately, same rounds
	requests     bool    // print every request of the image push and pull
}

// contender is one server of the comparison.
type contender struct {
	name     string
	t        target
	pid      int
	stop     func() error
	copyOnly bool   // the TLS copy server: pull of copyDig only
	copyDig  string // its file's digest
	// root holds the server's storage; a round removes its pushed blob
	// from it after the pull (dropBlob).
	root string
	// measured, per protocol
	m map[proto]*measures
	// absent are the protocols the server does not offer in ALPN.
	absent map[proto]bool
	// rss is the VmHWM at the end of the run.
	rss    int64
	rssErr error
}

// measures are one contender's results over the rounds, for one protocol.
type measures struct {
	push, pull           []transfer
	imagePush, imagePull []time.Duration
	ping                 []time.Duration
	conn                 string
}

// compareResults are a whole comparison.
type compareResults struct {
	cfg       compareConfig
	started   time.Time
	loadStart string
	loadEnd   string
	servers   []*contender
	zotSkip   string // why zot is missing from the table
}

// runCompare starts the servers, runs the rounds and stops everything,
// also on error.
func runCompare(ctx context.Context, cfg compareConfig, progress io.Writer) (res *compareResults, err error) {
	r := &compareResults{cfg: cfg, started: time.Now(), loadStart: benchutil.LoadAverage()}
	res = r
	if l, err := strconv.ParseFloat(res.loadStart, 64); err == nil && l > 0.5 {
		fmt.Fprintf(progress, "warning: load average %s: other work on this machine will skew the numbers\n", res.loadStart)
	}
	tmp, err := os.MkdirTemp("", "edgecr-compare-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rerr))
		}
	}()
	defer func() {
		for _, s := range r.servers {
			err = errors.Join(err, s.stop())
		}
	}()
	add := func(name string, stop func() error, pid int, t target, root string) *contender {
		c := &contender{name: name, t: t, pid: pid, stop: stop, root: root, m: map[proto]*measures{}, absent: map[proto]bool{}}
		fmt.Fprintf(progress, "%s: pid %d, %s\n", name, pid, t.base)
		for _, p := range cfg.protos {
			c.m[p] = &measures{}
		}
		res.servers = append(res.servers, c)
		return c
	}

	bin := cfg.edgecrd
	if bin == "" {
		fmt.Fprintln(progress, "building edgecrd")
		if bin, err = buildEdgecrd(ctx, tmp); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(progress, "starting edgecrd, distribution, zot and the TLS copy server")
	edir := filepath.Join(tmp, "edgecrd.d")
	if err := os.Mkdir(edir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the edgecrd dir: %w", err)
	}
	e, err := startEdgecrd(ctx, bin, edir)
	if e != nil {
		add("edgecrd", e.stop, e.pid(), target{base: e.base, user: e.user, password: e.password, roots: e.roots}, edir)
	}
	if err != nil {
		return nil, err
	}
	if cfg.edgecrdB != "" {
		bdir := filepath.Join(tmp, "edgecrd-b.d")
		if err := os.Mkdir(bdir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the edgecrd B dir: %w", err)
		}
		b, err := startEdgecrd(ctx, cfg.edgecrdB, bdir)
		if b != nil {
			add("edgecrd B", b.stop, b.pid(), target{base: b.base, user: b.user, password: b.password, roots: b.roots}, bdir)
		}
		if err != nil {
			return nil, fmt.Errorf("edgecrd B: %w", err)
		}
	}
	d, dt, err := startDistribution(ctx, filepath.Join(tmp, "distribution"), cfg.cost)
	if d != nil {
		add("distribution", d.stop, d.pid(), dt, filepath.Join(tmp, "distribution"))
	}
	if err != nil {
		return nil, err
	}
	if _, serr := os.Stat(cfg.zot); serr != nil {
		res.zotSkip = errNoZot.Error()
		fmt.Fprintln(progress, "skipping zot:", res.zotSkip)
	} else {
		z, zt, err := startZot(ctx, cfg.zot, filepath.Join(tmp, "zot"), cfg.cost, false)
		if z != nil {
			add("zot", z.stop, z.pid(), zt, filepath.Join(tmp, "zot"))
		}
		if err != nil {
			return nil, err
		}
		if cfg.zotCommit {
			z, zt, err := startZot(ctx, cfg.zot, filepath.Join(tmp, "zot-commit"), cfg.cost, true)
			if z != nil {
				add("zot, commit", z.stop, z.pid(), zt, filepath.Join(tmp, "zot-commit"))
			}
			if err != nil {
				return nil, err
			}
		}
	}
	tc, tt, dg, err := startTLSCopy(ctx, filepath.Join(tmp, "tlscopy"), 1<<40, cfg.size)
	if tc != nil {
		c := add("TLS copy limit", tc.stop, tc.pid(), tt, "")
		c.copyOnly, c.copyDig = true, dg
	}
	if err != nil {
		return nil, err
	}

	for _, s := range r.servers {
		for _, p := range cfg.protos {
			ok, err := offers(ctx, s.t, p)
			if err != nil {
				return nil, fmt.Errorf("asking %s for %s: %w", s.name, p, err)
			}
			if !ok {
				s.absent[p] = true
				fmt.Fprintf(progress, "%s does not offer %s: not measured over it\n", s.name, p)
			}
		}
	}
	if err := warmPages(tmp, 2*cfg.size); err != nil {
		return nil, err
	}
	for round := range cfg.runs {
		for pi, p := range cfg.protos {
			order := slices.Clone(res.servers)
			k := (round*len(cfg.protos) + pi) % len(order)
			order = append(order[k:], order[:k]...)
			for _, s := range order {
				if s.absent[p] {
					continue
				}
				seed := uint64(round*len(cfg.protos) + pi + 1)
				if err := measureRound(ctx, cfg, s, p, seed, progress); err != nil {
					return nil, fmt.Errorf("%s, %s, round %d: %w", s.name, p, round+1, err)
				}
			}
		}
	}
	for _, s := range res.servers {
		s.rss, s.rssErr = peakRSS(s.pid)
	}
	res.loadEnd = benchutil.LoadAverage()
	return res, nil
}

// measureRound is one contender's share of a round over one protocol: blob
// push and pull, image push and pull, n GET /v2/.
func measureRound(ctx context.Context, cfg compareConfig, s *contender, p proto, seed uint64, progress io.Writer) error {
	m := s.m[p]
	c := newClient(s.t, p)
	defer c.close()
	if cfg.requests {
		c.requests = prefixWriter{w: progress, prefix: fmt.Sprintf("%s %s ", s.name, p)}
	}
	// cpu starts a meter of the server's CPU time and the machine's; what
	// it returns fills them in.
	cpu := func() func(*transfer) {
		start, err := cpuTime(s.pid)
		mstart, merr := machineBusy()
		return func(t *transfer) {
			end, err2 := cpuTime(s.pid)
			mend, merr2 := machineBusy()
			if err == nil && err2 == nil {
				t.serverCPU, t.serverCPUOK = cpuUse{user: end.user - start.user, sys: end.sys - start.sys}, true
			}
			if merr == nil && merr2 == nil {
				t.machineCPU, t.machineCPUOK = mend-mstart, true
			}
		}
	}
	if s.copyOnly {
		meter := cpu()
		t, err := c.pull(ctx, repo, s.copyDig, cfg.size)
		if err != nil {
			return err
		}
		meter(&t)
		fmt.Fprintf(progress, "%s %s pull: %s\n", s.name, p, t)
		m.pull, m.conn = append(m.pull, t), t.conn
		return nil
	}

	meter := cpu()
	t, err := c.push(ctx, repo, seed, cfg.size)
	if err != nil {
		return err
	}
	meter(&t)
	fmt.Fprintf(progress, "%s %s push: %s\n", s.name, p, t)
	m.push, m.conn = append(m.push, t), t.conn

	meter = cpu()
	t, err = c.pull(ctx, repo, t.digest, t.bytes)
	if err != nil {
		return err
	}
	meter(&t)
	fmt.Fprintf(progress, "%s %s pull: %s\n", s.name, p, t)
	m.pull = append(m.pull, t)
	if err := dropBlob(s.root, t.digest); err != nil {
		return err
	}

	img, err := benchImage(seed)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("r%d", seed)
	d, err := c.pushImage(ctx, "bench/image", tag, img)
	if err != nil {
		return err
	}
	m.imagePush = append(m.imagePush, d)
	if d, err = c.pullImage(ctx, "bench/image", tag); err != nil {
		return err
	}
	m.imagePull = append(m.imagePull, d)

	l, err := c.pingLatency(ctx, cfg.n)
	if err != nil {
		return fmt.Errorf("timing GET /v2/: %w", err)
	}
	m.ping = append(m.ping, l.samples...)
	fmt.Fprintf(progress, "%s %s image push %v, pull %v, GET /v2/ median %s\n", s.name, p,
		m.imagePush[len(m.imagePush)-1].Round(time.Millisecond), d.Round(time.Millisecond), ms(summarize(l.samples).median))
	return nil
}

// offers reports whether the server negotiates p in TLS's ALPN when the
// client offers p and HTTP/1.1 (a server answers a list it shares nothing
// with by failing the handshake).
func offers(ctx context.Context, t target, p proto) (bool, error) {
	next := []string{string(p)}
	if p != protoHTTP1 {
		next = append(next, string(protoHTTP1))
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: t.roots, NextProtos: next, MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(t.base, "https://"))
	if err != nil {
		return false, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().NegotiatedProtocol == string(p), nil
}

// dropBlob removes the files of the blob with digest dg (sha256:<hex>)
// from a server's storage under root, as a deletion and collection would:
// each round's push then writes into page-cache pages the last round
// freed, whatever the order of the servers. Kept, the blobs of a run (up
// to 18 GiB) filled the page cache with pages never used before, which on
// the benchmark VM cost 2-3 s of system time per 512 MiB against 1 s for
// pages used before (docs/benchmarks.md): which server got which kind
// depended on its place in the order and the machine's history, and
// decided its push figures more than the server did.
func dropBlob(root, dg string) error {
	_, hex, ok := strings.Cut(dg, ":")
	if root == "" || !ok || len(hex) < 32 {
		return nil
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(p, hex) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finding blob %s under %s: %w", dg, root, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("finding blob %s under %s: no file", dg, root)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("removing blob %s: %w", dg, err)
		}
	}
	return nil
}

// warmPages writes n bytes to a file in dir and removes it, so that the
// first push of a run, like every later one (dropBlob), writes into
// page-cache pages freed just before rather than pages the kernel never
// handed out (which cost the benchmark VM 2-3 times the system time).
func warmPages(dir string, n int64) error {
	p := filepath.Join(dir, "warm")
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("warming the page cache: %w", err)
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0 && err == nil; left -= int64(len(buf)) {
		_, err = f.Write(buf[:min(int64(len(buf)), left)])
	}
	err = errors.Join(err, f.Close(), os.Remove(p))
	if err != nil {
		return fmt.Errorf("warming the page cache: %w", err)
	}
	return nil
}
