package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/trust"
)

// config is what a benchmark run measures.
type config struct {
	n             int    // timed runs of each command
	cas, casConf  string // distribution CAs of the second sandbox; "" for none
	casSetByFlags bool   // -cas was given: a missing directory is an error
}

// storeResult is what was measured with one sandbox trust store.
type storeResult struct {
	tmpl                *storeTemplate
	join, leave, status []time.Duration
	phases              [numPhases][]time.Duration
	phasesErr           error // why the join breakdown is missing
	ucaInstall          []time.Duration
	ucaFresh            []time.Duration
}

// results are the measurements of one benchmark run.
type results struct {
	cfg        config
	started    time.Time
	loadStart  string
	loadEnd    string
	registry   string // ecr.bench.internal:PORT
	joinURL    string
	ucaPath    string
	ucaInstall string // argv of join's refresh, with the root as ROOT
	stores     []*storeResult

	get           []time.Duration // docker-credential-edgecr get
	helperVersion []time.Duration // docker-credential-edgecr version
	edgecrVersion []time.Duration // edgecr version
	notes         []string
}

// runBench builds the commands, starts edgecrd, prepares the sandboxes and
// times the commands. Everything it starts (edgecrd, the commands) is
// stopped and everything it creates (one temp dir) removed before it
// returns, also on error and on cancellation (Ctrl-C, SIGTERM).
func runBench(ctx context.Context, cfg config, progress io.Writer) (res *results, err error) {
	res = &results{cfg: cfg, started: time.Now(), loadStart: benchutil.LoadAverage()}
	if l, err := strconv.ParseFloat(res.loadStart, 64); err == nil && l > 0.5 {
		fmt.Fprintf(progress, "warning: load average %s: other work on this machine will skew the numbers\n", res.loadStart)
	}
	uca, err := exec.LookPath("update-ca-certificates")
	if err != nil {
		return nil, fmt.Errorf("the sandbox's trust store is Debian's and join runs its update-ca-certificates: %w (apt-get install ca-certificates)", err)
	}
	res.ucaPath = uca

	tmp, err := os.MkdirTemp("", "edgecr-agentbench-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	if tmp, err = filepath.Abs(tmp); err != nil {
		return nil, err
	}
	defer func() {
		if rerr := removeAll(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rerr))
		}
	}()

	fmt.Fprintln(progress, "building edgecrd, edgecr, docker-credential-edgecr")
	bins, err := buildBinaries(ctx, filepath.Join(tmp, "bin"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "starting edgecrd")
	dev, err := startDevice(ctx, bins.edgecrd, tmp)
	if dev != nil {
		defer func() {
			if serr := dev.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	res.registry, res.joinURL = dev.registry, "https://"+dev.addr
	caPEM, err := os.ReadFile(filepath.Join(dev.dataDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the device CA: %w", err)
	}

	b := &bench{cfg: cfg, res: res, bins: bins, dev: dev, caPEM: caPEM, tmp: tmp, scratch: filepath.Join(tmp, "scratch"), progress: progress}
	if err := os.Mkdir(b.scratch, 0o700); err != nil {
		return nil, err
	}
	templates, err := b.templates(ctx, uca)
	if err != nil {
		return nil, err
	}
	for i, t := range templates {
		sr, err := b.measureStore(ctx, t, i == len(templates)-1)
		if err != nil {
			return nil, fmt.Errorf("sandbox with %s: %w", t.label, err)
		}
		res.stores = append(res.stores, sr)
	}
	res.loadEnd = benchutil.LoadAverage()
	return res, nil
}

// bench holds what the measurements share.
type bench struct {
	cfg      config
	res      *results
	bins     binaries
	dev      *device
	caPEM    []byte
	tmp      string
	scratch  string
	progress io.Writer
	seq      int
}

// templates prepares the sandbox roots: the e2e tests' one-CA store, and
// one holding this machine's distribution CAs unless -cas is "".
func (b *bench) templates(ctx context.Context, uca string) ([]*storeTemplate, error) {
	fmt.Fprintln(b.progress, "preparing the sandbox trust stores (update-ca-certificates --fresh, relocated)")
	one, err := oneCATemplate(ctx, uca, filepath.Join(b.tmp, "tmpl-1ca"))
	if err != nil {
		return nil, err
	}
	out := []*storeTemplate{one}
	if b.cfg.cas == "" {
		return out, nil
	}
	if _, err := os.Stat(b.cfg.cas); errors.Is(err, fs.ErrNotExist) && !b.cfg.casSetByFlags {
		b.res.notes = append(b.res.notes, fmt.Sprintf("No %s on this machine: only the one-CA sandbox was measured.", b.cfg.cas))
		return out, nil
	}
	distro, err := distroTemplate(ctx, uca, filepath.Join(b.tmp, "tmpl-distro"), b.cfg.cas, b.cfg.casConf)
	if err != nil {
		return nil, err
	}
	return append(out, distro), nil
}

// next is a fresh directory name under the temp dir.
func (b *bench) next(prefix string) string {
	b.seq++
	return filepath.Join(b.tmp, fmt.Sprintf("%s-%d", prefix, b.seq))
}

// measureStore times join (with its phases) and leave, each into a fresh
// copy of tmpl, and update-ca-certificates as each of them runs it on
// another copy; then status on a joined copy, and, when last is set, the
// credential helper on that joined client. Run -1 of each loop is the
// untimed warm-up.
func (b *bench) measureStore(ctx context.Context, tmpl *storeTemplate, last bool) (*storeResult, error) {
	sr := &storeResult{tmpl: tmpl}
	n := b.cfg.n
	for i := -1; i < n; i++ {
		fmt.Fprintf(b.progress, "\r%s: join/leave %d/%d ", tmpl.key, i+1, n)
		inst, fresh, err := b.probeRefresh(ctx, tmpl)
		if err != nil {
			return nil, err
		}
		join, leave, phases, perr, err := b.joinLeave(ctx, tmpl)
		if err != nil {
			return nil, err
		}
		if i < 0 {
			continue
		}
		sr.ucaInstall = append(sr.ucaInstall, inst)
		sr.ucaFresh = append(sr.ucaFresh, fresh)
		sr.join = append(sr.join, join)
		sr.leave = append(sr.leave, leave)
		if perr != nil {
			sr.phasesErr = perr
		}
		for p := range numPhases {
			sr.phases[p] = append(sr.phases[p], phases[p])
		}
	}
	fmt.Fprintln(b.progress)

	c, err := newClient(tmpl, b.next("client"), filepath.Dir(b.bins.helper))
	if err != nil {
		return nil, err
	}
	defer c.remove()
	if _, err := b.join(ctx, c); err != nil {
		return nil, err
	}
	fmt.Fprintf(b.progress, "%s: status\n", tmpl.key)
	if sr.status, err = b.repeat(ctx, c.env, nil, func(out []byte) error {
		if !bytes.Contains(out, []byte(b.res.registry)) {
			return fmt.Errorf("status does not name %s", b.res.registry)
		}
		return nil
	}, b.bins.edgecr, "status", "--root", c.root); err != nil {
		return nil, err
	}
	if last {
		if err := b.measureHelper(ctx, c); err != nil {
			return nil, err
		}
	}
	if _, err := timedExec(ctx, b.scratch, c.env, nil, false, b.bins.edgecr, "leave", "--root", c.root); err != nil {
		return nil, err
	}
	return sr, nil
}

// join joins client c with a fresh one-use token; the token is made before
// the clock starts.
func (b *bench) join(ctx context.Context, c *client) (execResult, error) {
	tok, err := b.dev.token(ctx)
	if err != nil {
		return execResult{}, err
	}
	r, err := timedExec(ctx, b.scratch, c.env, nil, true, b.bins.edgecr, "join", b.res.joinURL, "--token", tok, "--root", c.root)
	if err != nil {
		return r, err
	}
	bundle, err := c.bundle()
	if err != nil {
		return r, err
	}
	if got := bytes.Count(bundle, []byte("-----BEGIN CERTIFICATE-----")); got != c.cas+1 {
		return r, fmt.Errorf("after join the sandbox's trust bundle holds %d certificates, want %d: update-ca-certificates did not run as expected", got, c.cas+1)
	}
	return r, nil
}

// joinLeave joins a fresh copy of tmpl and leaves it again, and checks that
// the trust bundle is as before.
func (b *bench) joinLeave(ctx context.Context, tmpl *storeTemplate) (join, leave time.Duration, phases [numPhases]time.Duration, perr, err error) {
	c, err := newClient(tmpl, b.next("client"), filepath.Dir(b.bins.helper))
	if err != nil {
		return 0, 0, phases, nil, err
	}
	defer c.remove()
	j, err := b.join(ctx, c)
	if err != nil {
		return 0, 0, phases, nil, err
	}
	phases, perr = joinPhases(j.lines, j.wall)
	l, err := timedExec(ctx, b.scratch, c.env, nil, false, b.bins.edgecr, "leave", "--root", c.root)
	if err != nil {
		return 0, 0, phases, nil, err
	}
	bundle, err := c.bundle()
	if err != nil {
		return 0, 0, phases, nil, err
	}
	if !bytes.Equal(bundle, tmpl.bundle) {
		return 0, 0, phases, nil, errors.New("after leave the sandbox's trust bundle differs from before the join")
	}
	return j.wall, l.wall, phases, perr, nil
}

// probeRefresh times update-ca-certificates alone, on a fresh copy of tmpl,
// with exactly the command lines the agent runs (trust.PlanStore): after
// writing the device CA's anchor file, as join does, and after removing it
// again, as leave does.
func (b *bench) probeRefresh(ctx context.Context, tmpl *storeTemplate) (install, fresh time.Duration, err error) {
	dir := b.next("probe")
	root := filepath.Join(dir, "root")
	defer os.RemoveAll(dir)
	if err := copyTree(tmpl.root, root); err != nil {
		return 0, 0, fmt.Errorf("copying the sandbox root: %w", err)
	}
	plan, err := trust.PlanStore(trust.Debian, root, agent.TrustName(b.res.registry), b.caPEM)
	if err != nil {
		return 0, 0, err
	}
	if plan.File == "" || len(plan.Install) != 1 || len(plan.Uninstall) != 1 {
		return 0, 0, fmt.Errorf("unexpected Debian trust store plan: %+v", plan)
	}
	b.res.ucaInstall = strings.ReplaceAll(strings.Join(plan.Install[0], " "), root, "ROOT")
	if want := append(slices.Clone(plan.Install[0]), "--fresh"); !slices.Equal(plan.Uninstall[0], want) {
		return 0, 0, fmt.Errorf("leave's refresh %q is not join's with --fresh: update the report", plan.Uninstall[0])
	}
	bundlePath := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")

	if err := os.WriteFile(plan.File, b.caPEM, 0o644); err != nil {
		return 0, 0, err
	}
	r, err := timedExec(ctx, b.scratch, os.Environ(), nil, false, plan.Install[0]...)
	if err != nil {
		return 0, 0, err
	}
	if got, err := os.ReadFile(bundlePath); err != nil || !bytes.Contains(got, bytes.TrimSpace(b.caPEM)) {
		return 0, 0, fmt.Errorf("update-ca-certificates did not put the device CA into %s (%v)", bundlePath, err)
	}
	install = r.wall
	if err := os.Remove(plan.File); err != nil {
		return 0, 0, err
	}
	if r, err = timedExec(ctx, b.scratch, os.Environ(), nil, false, plan.Uninstall[0]...); err != nil {
		return 0, 0, err
	}
	if got, err := os.ReadFile(bundlePath); err != nil || !bytes.Equal(got, tmpl.bundle) {
		return 0, 0, fmt.Errorf("update-ca-certificates --fresh did not restore %s (%v)", bundlePath, err)
	}
	return install, r.wall, nil
}

// measureHelper times `docker-credential-edgecr get` for the joined client
// c's registry, and the start-up floors: `docker-credential-edgecr version`
// and `edgecr version`.
func (b *bench) measureHelper(ctx context.Context, c *client) error {
	fmt.Fprintln(b.progress, "docker-credential-edgecr get, version floors")
	var err error
	b.res.get, err = b.repeat(ctx, c.env, []byte(b.res.registry+"\n"), func(out []byte) error {
		if !bytes.Contains(out, []byte(`"Username":"`)) || !bytes.Contains(out, []byte(`"Secret":"`)) {
			return errors.New("get returned no credential")
		}
		return nil
	}, b.bins.helper, "get")
	if err != nil {
		return err
	}
	if b.res.helperVersion, err = b.repeat(ctx, c.env, nil, nil, b.bins.helper, "version"); err != nil {
		return err
	}
	b.res.edgecrVersion, err = b.repeat(ctx, c.env, nil, nil, b.bins.edgecr, "version")
	return err
}

// repeat runs argv once untimed and n times timed; check (may be nil)
// judges each output.
func (b *bench) repeat(ctx context.Context, env []string, stdin []byte, check func([]byte) error, argv ...string) ([]time.Duration, error) {
	var out []time.Duration
	for i := -1; i < b.cfg.n; i++ {
		r, err := timedExec(ctx, b.scratch, env, stdin, false, argv...)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(r.output); err != nil {
				return nil, fmt.Errorf("%s: %w:\n%s", displayArgv(argv), err, r.output)
			}
		}
		if i >= 0 {
			out = append(out, r.wall)
		}
	}
	return out, nil
}

// removeAll removes dir, retrying briefly: a process killed on interrupt
// may still have been writing into it.
func removeAll(dir string) error {
	var err error
	for range 5 {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}
