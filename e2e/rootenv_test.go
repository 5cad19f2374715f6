//go:build linux

package e2e

// Scaffolding for tests that run as root and change the real machine: a
// device in a network namespace of its own (so that clients reach it on a
// non-loopback address, which Docker insists on before it verifies TLS), and
// a snapshot of every system file a client-side change touches (hosts file,
// trust store, Docker certs.d and config.json) that is put back byte for
// byte when the test ends.
//
// Every change registers its undo before it is made. Undos run from
// t.Cleanup (also after a failure or a panic in the test), from a handler for
// SIGINT/SIGTERM/SIGHUP, and, for what a SIGKILL or a test timeout leaves
// behind, from the next run: root tests hold a machine-wide lock, so any
// edgecr-e2e namespace or snapshot journal of another process found under
// the lock is stale, and is removed or restored before anything else.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
	"golang.org/x/sys/unix"
)

const (
	// rootLockFile serializes root tests across processes.
	rootLockFile = testenv.MachineLock
	// journalDir keeps each live system snapshot on disk (survives reboots,
	// unlike /run, as the changes to /etc do).
	journalDir = "/var/tmp/edgecr-e2e"
	// netnsPrefix names the namespaces: edgecr-e2e-<pid>-<random>.
	netnsPrefix = "edgecr-e2e-"
	// vethPrefix names both veth ends: edgecr<6 hex>h (root namespace) and
	// edgecr<6 hex>n (device namespace), within IFNAMSIZ.
	vethPrefix = "edgecr"
	// devicePort is where a netns device serves; the namespace is its own,
	// so the port is always free.
	devicePort = 31001
)

var vethName = regexp.MustCompile(`^` + vethPrefix + `[0-9a-f]{6}[hn]$`)

// rootEnv is the process-wide state of the root helpers.
var rootEnv struct {
	once sync.Once
	err  error
	lock *testenv.FileLock // held until the process's last test is done

	mu    sync.Mutex
	slots map[int]bool    // 198.18.0.<4n>/30 address slots in use
	links map[string]bool // veth ends this process made
	undos []*undoer       // for the signal handler, in registration order
}

// lockRootEnv takes the machine-wide lock for root tests, once per process,
// and clears what earlier, interrupted runs left behind.
func lockRootEnv(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "changes network namespaces and system files of the machine")
	rootEnv.once.Do(func() { rootEnv.err = initRootEnv(t.Logf) })
	if rootEnv.err != nil {
		t.Fatalf("preparing the root test environment: %v", rootEnv.err)
	}
}

func initRootEnv(logf func(string, ...any)) error {
	rootEnv.slots = map[int]bool{}
	rootEnv.links = map[string]bool{}
	if err := os.MkdirAll(filepath.Dir(rootLockFile), 0o755); err != nil {
		return err
	}
	lock, err := testenv.LockFile(rootLockFile, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("waiting for another root e2e run: %w", err)
	}
	rootEnv.lock = lock
	installUndoSignalHandler()
	if err := sweepStaleNetns(logf); err != nil {
		return err
	}
	return restoreStaleJournals(logf)
}

// releaseRootEnv runs after the last test: under the lock, it removes the
// journal dir when no journal is left in it (one that is, a restore that
// failed, stays for the next run), then the lock file (see
// testenv.FileLock), so that the machine keeps nothing of the tests.
func releaseRootEnv() error {
	if rootEnv.lock == nil {
		return nil
	}
	var errs []error
	if err := testenv.RemoveIfEmpty(journalDir); err != nil {
		errs = append(errs, err)
	}
	if err := rootEnv.lock.Unlock(); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", rootLockFile, err))
	}
	rootEnv.lock = nil
	return errors.Join(errs...)
}

// undoer undoes one change to the machine, exactly once: when the test calls
// it, in t.Cleanup, or on a signal. fn must not use the testing.T: on a
// signal the test may be anywhere.
type undoer struct {
	name string
	once sync.Once
	fn   func(logf func(string, ...any)) error
	err  error
}

// onUndo registers fn as the undo of a change about to be made.
func onUndo(t testing.TB, name string, fn func(logf func(string, ...any)) error) *undoer {
	u := &undoer{name: name, fn: fn}
	rootEnv.mu.Lock()
	rootEnv.undos = append(rootEnv.undos, u)
	rootEnv.mu.Unlock()
	t.Cleanup(func() {
		if err := u.run(t.Logf); err != nil {
			t.Errorf("undoing %s: %v", name, err)
		}
	})
	return u
}

func (u *undoer) run(logf func(string, ...any)) error {
	u.once.Do(func() {
		u.err = u.fn(logf)
		rootEnv.mu.Lock()
		rootEnv.undos = slices.DeleteFunc(rootEnv.undos, func(v *undoer) bool { return v == u })
		rootEnv.mu.Unlock()
	})
	return u.err
}

// installUndoSignalHandler runs every pending undo, newest first, when the
// test binary is interrupted (go test forwards ^C; CI runners send SIGTERM).
// A second signal kills the process the default way.
//
// SIGPIPE (`go test -v | head` closing the pipe) would otherwise kill the
// process mid-change: with it caught, writes to the closed pipe fail and the
// test runs on to its cleanups.
func installUndoSignalHandler() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-ch
		signal.Stop(ch)
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...) }
		logf("%v: undoing the changes root tests made to this machine", sig)
		rootEnv.mu.Lock()
		pending := slices.Clone(rootEnv.undos)
		rootEnv.mu.Unlock()
		for _, u := range slices.Backward(pending) {
			if err := u.run(logf); err != nil {
				logf("undoing %s: %v", u.name, err)
			}
		}
		if err := releaseRootEnv(); err != nil {
			logf("%v", err)
		}
		os.Exit(2)
	}()
}

// rootRun runs a command to completion and returns its combined output; the
// error names the command and carries the output, so that callers can put it
// in a failure message as is.
func rootRun(ctx context.Context, env []string, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, indent(out.String()))
	}
	return out.String(), err
}

// ipCmd runs iproute2's ip with a bounded time, for setup and teardown alike
// (teardown runs after the test's context is cancelled).
func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rootRun(ctx, nil, "", "ip", args...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testDeadlineCtx is the test's context, ending 30 s before the go test
// timeout so that a hung command fails the test while cleanups can still run
// (the timeout itself kills the process without running any).
func testDeadlineCtx(t *testing.T) context.Context {
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		c, cancel := context.WithDeadline(ctx, dl.Add(-30*time.Second))
		t.Cleanup(cancel)
		ctx = c
	}
	return ctx
}

// ---------------------------------------------------------------------------
// The device in a network namespace.

// nsDevice is `edgecrd serve` running inside a network namespace of its own,
// reachable from the root namespace only over a veth pair:
// HostIP/30 on HostIf here, IP/30 inside NS. The embedded device's helpers
// (get, transport, remote, ...) work against IP:31001.
type nsDevice struct {
	*device
	NS     string // network namespace, edgecr-e2e-<pid>-<random>
	HostIf string // veth end in the root namespace
	HostIP string // 198.18.0.1 for the first device
	IP     string // 198.18.0.2 for the first device: the device's address
	nsIf   string
	slot   int
	logDir string
	undo   *undoer
}

// netnsDevice starts `edgecrd serve --data-dir dataDir --name e2e --ip IP
// --listen IP:31001 extra...` inside a fresh network namespace (dataDir ""
// means a fresh temp dir; an existing one, for example made by `edgecrd init`,
// is reused), waits until it answers TLS on IP:31001 from the root namespace
// and reads `edgecrd info -o json`. The first device of a process gets
// 198.18.0.2 (host side 198.18.0.1), later concurrent ones the next /30s.
// Cleanup (or Close) kills the process and removes the namespace and the
// veth pair, and fails the test if anything is left.
func netnsDevice(t *testing.T, dataDir string, extra ...string) *nsDevice {
	t.Helper()
	lockRootEnv(t)
	testenv.NeedCommand(t, "ip", "makes the network namespace the device runs in (apt-get install iproute2)")
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), "data")
	}
	id := randomHex(3)
	d := &nsDevice{
		NS:     fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), id),
		HostIf: vethPrefix + id + "h",
		nsIf:   vethPrefix + id + "n",
		logDir: t.TempDir(),
	}
	rootEnv.mu.Lock()
	for d.slot = 0; rootEnv.slots[d.slot]; d.slot++ {
	}
	rootEnv.slots[d.slot] = true
	rootEnv.links[d.HostIf], rootEnv.links[d.nsIf] = true, true
	rootEnv.mu.Unlock()
	release := func() {
		rootEnv.mu.Lock()
		delete(rootEnv.slots, d.slot)
		rootEnv.mu.Unlock()
	}
	if d.slot > 63 {
		release()
		t.Fatal("more than 64 netns devices at once")
	}
	base := net.IPv4(198, 18, 0, byte(4*d.slot)).To4()
	d.HostIP = net.IPv4(base[0], base[1], base[2], base[3]+1).String()
	d.IP = net.IPv4(base[0], base[1], base[2], base[3]+2).String()
	subnet := base.String() + "/30"

	// Nothing else on this machine may use the /30: the device's traffic
	// must stay on the veth.
	if out, err := ipCmd("-o", "addr", "show", "to", subnet); err != nil || strings.TrimSpace(out) != "" {
		release()
		t.Fatalf("%s is already in use on this machine (or ip failed: %v):\n%s", subnet, err, indent(out))
	}
	d.undo = onUndo(t, "network namespace "+d.NS, d.teardown)
	steps := [][]string{
		{"netns", "add", d.NS},
		{"link", "add", d.HostIf, "type", "veth", "peer", "name", d.nsIf, "netns", d.NS},
		{"addr", "add", d.HostIP + "/30", "dev", d.HostIf},
		{"link", "set", d.HostIf, "up"},
		{"-n", d.NS, "addr", "add", d.IP + "/30", "dev", d.nsIf},
		{"-n", d.NS, "link", "set", d.nsIf, "up"},
		{"-n", d.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if _, err := ipCmd(s...); err != nil {
			t.Fatalf("making the device namespace: %v", err)
		}
	}
	// The route to the device must be the veth, nothing else.
	if out, err := ipCmd("-o", "route", "get", d.IP); err != nil || !strings.Contains(out, " dev "+d.HostIf+" ") {
		t.Fatalf("route to %s does not go over %s (%v):\n%s", d.IP, d.HostIf, err, indent(out))
	}

	d.device = &device{t: t, dataDir: dataDir, addr: net.JoinHostPort(d.IP, strconv.Itoa(devicePort)), exited: make(chan struct{})}
	args := append([]string{"netns", "exec", d.NS, bin.edgecrd, "serve", "--data-dir", dataDir,
		"--name", "e2e", "--ip", d.IP, "--listen", d.addr, "--ui-listen", "off"}, extra...)
	d.cmd = exec.Command("ip", args...)
	// `ip netns exec` execs edgecrd, so this is edgecrd's pid; it dies with
	// the test binary, even on SIGKILL.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err1 := os.Create(filepath.Join(d.logDir, "stdout"))
	stderr, err2 := os.Create(filepath.Join(d.logDir, "stderr"))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	d.cmd.Stdout, d.cmd.Stderr = stdout, stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting edgecrd in %s: %v", d.NS, err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()

	start := time.Now()
	for {
		select {
		case <-d.exited:
			t.Fatalf("edgecrd exited during start in %s: %v\nstderr:\n%s", d.NS, d.cmd.ProcessState, indent(d.Logs()))
		default:
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", d.addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("edgecrd in %s does not answer TLS on %s: %v\nstderr:\n%s", d.NS, d.addr, err, indent(d.Logs()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, errOut, err := edgecrd(t, "info", "--data-dir", dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd info: %v\n%s", err, indent(errOut))
	}
	if err := json.Unmarshal([]byte(out), &d.info); err != nil {
		t.Fatalf("parsing edgecrd info -o json: %v\n%s", err, indent(out))
	}
	if d.info.IPAddress != d.IP || !strings.HasSuffix(d.info.Endpoint, ":"+strconv.Itoa(devicePort)) {
		t.Fatalf("edgecrd info = %+v, want IP %s and port %d", d.info, d.IP, devicePort)
	}
	// A strict handshake: the certificate names the registry host and the
	// IP, under the CA that info names.
	host, _, _ := net.SplitHostPort(d.info.Endpoint)
	for _, sn := range []string{host, d.IP} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", d.addr, &tls.Config{RootCAs: d.caPool(), ServerName: sn})
		if err != nil {
			t.Fatalf("verified TLS to %s as %q: %v", d.addr, sn, err)
		}
		c.Close()
	}
	t.Logf("device %s serving on %s in %s (host side %s on %s), up in %v", d.info.Endpoint, d.addr, d.NS, d.HostIP, d.HostIf, time.Since(start).Round(time.Millisecond))
	return d
}

// Logs returns what edgecrd wrote to stderr so far.
func (d *nsDevice) Logs() string {
	b, _ := os.ReadFile(filepath.Join(d.logDir, "stderr"))
	return string(b)
}

// Close stops the device and removes its namespace and veth pair now
// (cleanup does it otherwise), failing the test if anything is left.
func (d *nsDevice) Close() {
	d.t.Helper()
	if err := d.undo.run(d.t.Logf); err != nil {
		d.t.Fatalf("removing device namespace %s: %v", d.NS, err)
	}
}

// teardown kills edgecrd, deletes the namespace and the veth, and checks
// that nothing of either is left. It copes with a half-made device.
func (d *nsDevice) teardown(logf func(string, ...any)) error {
	var errs []error
	if d.device != nil && d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("edgecrd (pid %d) did not exit after SIGKILL", d.cmd.Process.Pid))
		}
	}
	errs = append(errs, removeNetns(d.NS, logf))
	if err := waitLinkGone(d.HostIf); err != nil {
		errs = append(errs, err)
	}
	base := net.IPv4(198, 18, 0, byte(4*d.slot)).String()
	if out, err := ipCmd("-o", "addr", "show", "to", base+"/30"); err != nil || strings.TrimSpace(out) != "" {
		errs = append(errs, fmt.Errorf("addresses of %s/30 still present (%v):\n%s", base, err, indent(out)))
	}
	err := errors.Join(errs...)
	if err == nil {
		rootEnv.mu.Lock()
		delete(rootEnv.slots, d.slot)
		rootEnv.mu.Unlock()
	}
	return err
}

// removeNetns kills any process still in the namespace, deletes it and
// checks that `ip netns list` no longer shows it.
func removeNetns(ns string, logf func(string, ...any)) error {
	list, err := ipCmd("netns", "list")
	if err != nil {
		return err
	}
	if !slices.Contains(netnsNames(list), ns) {
		return nil
	}
	// These can only be processes a run of these tests started.
	if out, err := ipCmd("netns", "pids", ns); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				logf("killing pid %d left in namespace %s", pid, ns)
				syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
					time.Sleep(25 * time.Millisecond)
				}
			}
		}
	}
	if _, err := ipCmd("netns", "del", ns); err != nil {
		return err
	}
	list, err = ipCmd("netns", "list")
	if err != nil {
		return err
	}
	if slices.Contains(netnsNames(list), ns) {
		return fmt.Errorf("namespace %s still listed after ip netns del:\n%s", ns, indent(list))
	}
	return nil
}

// waitLinkGone waits for the kernel to destroy a veth end after its peer's
// namespace went away (that is asynchronous), deletes it if it lingers, and
// checks `ip link` no longer shows it.
func waitLinkGone(name string) error {
	for i := 0; ; i++ {
		out, err := ipCmd("-o", "link", "show")
		if err != nil {
			return err
		}
		if !slices.Contains(linkNames(out), name) {
			return nil
		}
		switch {
		case i == 40: // 2 s
			if _, err := ipCmd("link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				return err
			}
		case i > 200:
			return fmt.Errorf("link %s still present:\n%s", name, indent(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// netnsNames parses `ip netns list` ("name (id: 3)" lines).
func netnsNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// linkNames parses `ip -o link show` ("7: name@peer: <...>" lines).
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		names = append(names, name)
	}
	return names
}

// sweepStaleNetns removes the namespaces and veth ends of earlier runs.
// It runs under the machine-wide lock: no other live run owns any.
func sweepStaleNetns(logf func(string, ...any)) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil // no namespaces without ip; netnsDevice says what is missing
	}
	list, err := ipCmd("netns", "list")
	if err != nil {
		return err
	}
	own := fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())
	var errs []error
	for _, ns := range netnsNames(list) {
		if !strings.HasPrefix(ns, netnsPrefix) || strings.HasPrefix(ns, own) {
			continue
		}
		age := "age unknown"
		if fi, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			age = "made " + time.Since(fi.ModTime()).Round(time.Second).String() + " ago"
		}
		logf("removing stale network namespace %s (%s, by an earlier run)", ns, age)
		errs = append(errs, removeNetns(ns, logf))
	}
	// The root-side ends of deleted namespaces go away on their own, a
	// moment later; ends of a pair never moved into a namespace do not.
	links, err := ipCmd("-o", "link", "show")
	if err != nil {
		return err
	}
	for _, l := range linkNames(links) {
		rootEnv.mu.Lock()
		ours := rootEnv.links[l]
		rootEnv.mu.Unlock()
		if vethName.MatchString(l) && !ours {
			logf("removing stale veth %s", l)
			errs = append(errs, waitLinkGone(l))
		}
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// System snapshot.

// System paths a client-side change touches (Debian/Ubuntu layout).
const (
	hostsPath       = "/etc/hosts"
	sslCertsDir     = "/etc/ssl/certs"
	caBundlePath    = "/etc/ssl/certs/ca-certificates.crt"
	localCADir      = "/usr/local/share/ca-certificates"
	caConfPath      = "/etc/ca-certificates.conf"
	dockerCertsDDir = "/etc/docker/certs.d"
)

// snapRoot is one tracked location.
type snapRoot struct {
	Path string
	// Tree: a directory tracked with everything below it. Otherwise a single
	// file (a symlink is followed: its target is tracked too) or, with
	// DirOnly, a directory whose contents are not tracked (removed whole if
	// it did not exist before).
	Tree    bool `json:",omitempty"`
	DirOnly bool `json:",omitempty"`
}

// fsEntry is the state of one path.
type fsEntry struct {
	Kind   string      // file, dir, symlink, other; absent when missing
	Mode   fs.FileMode `json:",omitempty"` // permission bits
	UID    int         `json:",omitempty"`
	GID    int         `json:",omitempty"`
	Target string      `json:",omitempty"` // symlink target
	Data   []byte      `json:",omitempty"` // file content
	MTime  time.Time   // restored too, but not compared
}

// sysSnapshot is the state of the tracked system locations at one moment,
// also kept on disk as a journal until it has been restored.
type sysSnapshot struct {
	Taken   time.Time
	PID     int
	Roots   []snapRoot
	Entries map[string]*fsEntry // by absolute path
	// Anchors are the nearest existing directories above roots that were
	// absent: making and removing a root changes their mtime, which the
	// restore sets back.
	Anchors map[string]time.Time

	journal string
	undo    *undoer
}

// dockerConfigDir is where the docker CLI of the user running the tests
// reads config.json.
func dockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".docker")
}

// snapshotSystem records /etc/hosts, the trust store (/etc/ssl/certs with
// the bundle and every link, /usr/local/share/ca-certificates,
// /etc/ca-certificates.conf), /etc/docker/certs.d and the Docker config.json
// of the user running docker ($DOCKER_CONFIG or ~/.docker, symlink
// followed), writes the record to a journal, and registers its restore:
// every byte back, what was added removed, what was removed re-created; for
// the trust store `update-ca-certificates --fresh` first, then the bundle
// and links checked byte for byte. Verify reports any difference.
func snapshotSystem(t *testing.T) *sysSnapshot {
	t.Helper()
	lockRootEnv(t)
	cfg := dockerConfigDir()
	s := &sysSnapshot{
		Taken: time.Now(),
		PID:   os.Getpid(),
		Roots: []snapRoot{
			{Path: hostsPath},
			{Path: sslCertsDir, Tree: true},
			{Path: localCADir, Tree: true},
			{Path: caConfPath},
			{Path: dockerCertsDDir, Tree: true},
			{Path: cfg, DirOnly: true},
			{Path: filepath.Join(cfg, "config.json")},
		},
	}
	var err error
	if s.Entries, err = captureRoots(s.Roots); err != nil {
		t.Fatalf("snapshotting the system: %v", err)
	}
	s.Anchors = map[string]time.Time{}
	for _, r := range s.Roots {
		for p := r.Path; p != "/"; p = filepath.Dir(p) {
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if p != r.Path {
				s.Anchors[p] = fi.ModTime()
			}
			break
		}
	}
	if err := os.MkdirAll(journalDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.journal = filepath.Join(journalDir, fmt.Sprintf("journal-%d-%s.json", s.PID, randomHex(4)))
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileSync(s.journal+".tmp", b); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.journal+".tmp", s.journal); err != nil {
		t.Fatal(err)
	}
	s.undo = onUndo(t, "system snapshot "+s.journal, s.restore)
	t.Logf("system snapshot: %d paths, journal %s", len(s.Entries), s.journal)
	return s
}

// Restore puts the system back now (cleanup does it otherwise) and fails t
// if it cannot.
func (s *sysSnapshot) Restore(t testing.TB) {
	t.Helper()
	if err := s.undo.run(t.Logf); err != nil {
		t.Fatalf("restoring the system snapshot: %v", err)
	}
}

// Diff lists every difference between the snapshot and the system now:
// "<path>: added|removed|<what changed>".
func (s *sysSnapshot) Diff() []string {
	now, err := captureRoots(s.Roots)
	if err != nil {
		return []string{"capturing the system: " + err.Error()}
	}
	return diffEntries(s.Entries, now)
}

// Verify fails t with every difference from the snapshot.
func (s *sysSnapshot) Verify(t testing.TB) {
	t.Helper()
	if d := s.Diff(); len(d) > 0 {
		t.Errorf("system differs from the snapshot of %s:\n%s", s.Taken.Format(time.TimeOnly), indent(strings.Join(d, "\n")))
	}
}

// restore puts every tracked path back and removes the journal once the
// system matches the snapshot.
func (s *sysSnapshot) restore(logf func(string, ...any)) error {
	now, err := captureRoots(s.Roots)
	if err != nil {
		return err
	}
	diff := diffEntries(s.Entries, now)
	if len(diff) == 0 {
		return errors.Join(s.restoreMTimes(), s.dropJournal())
	}
	logf("restoring %d changed paths:\n%s", len(diff), indent(strings.Join(diff, "\n")))
	inTrust := func(p string) bool {
		return p == caConfPath || within(p, localCADir) || within(p, sslCertsDir)
	}
	trustChanged := false
	for p := range mapsKeys(s.Entries, now) {
		trustChanged = trustChanged || inTrust(p) && !sameEntry(s.Entries[p], now[p])
	}
	var errs []error
	if trustChanged {
		// The sources first, then let the tool rebuild links and bundle the
		// way it does (--fresh: no dangling links), then check its work.
		errs = append(errs, s.apply(now, func(p string) bool { return p == caConfPath || within(p, localCADir) }))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := rootRun(ctx, nil, "", "update-ca-certificates", "--fresh")
		cancel()
		if err != nil {
			errs = append(errs, err)
		} else {
			logf("update-ca-certificates --fresh: …\n%s", indent(lastLines(out, 3)))
		}
		if now, err = captureRoots(s.Roots); err != nil {
			return err
		}
		var left []string
		for _, d := range diffEntries(s.Entries, now) {
			if p, _, _ := strings.Cut(d, ": "); within(p, sslCertsDir) {
				left = append(left, d)
			}
		}
		if len(left) == 0 {
			logf("update-ca-certificates --fresh rebuilt %s byte-identical (bundle and links)", sslCertsDir)
		} else {
			logf("after update-ca-certificates --fresh, still different (restoring from the snapshot):\n%s", indent(strings.Join(left, "\n")))
		}
	}
	errs = append(errs, s.apply(now, func(string) bool { return true }))
	errs = append(errs, s.restoreMTimes())
	if d := s.Diff(); len(d) > 0 {
		errs = append(errs, fmt.Errorf("still different after restore (journal %s kept):\n%s", s.journal, indent(strings.Join(d, "\n"))))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.dropJournal()
}

// restoreMTimes sets modification times back too (deepest first, so that
// a directory's sticks), so that not even `ls -l` shows a trace.
func (s *sysSnapshot) restoreMTimes() error {
	mtimes := map[string]time.Time{}
	maps.Copy(mtimes, s.Anchors)
	for p, e := range s.Entries {
		if !isAbsent(e) && !e.MTime.IsZero() {
			mtimes[p] = e.MTime
		}
	}
	paths := slices.Collect(maps.Keys(mtimes))
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, p := range paths {
		if fi, err := os.Lstat(p); err != nil || fi.ModTime().Equal(mtimes[p]) {
			continue
		}
		ts := []unix.Timespec{{Sec: 0, Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimes[p].UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("setting mtime of %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func (s *sysSnapshot) dropJournal() error {
	if err := os.Remove(s.journal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// apply brings the paths selected by sel back to the snapshot, given the
// current state now: removals deepest first, creations shallowest first,
// content written in place (the hosts file may be a bind mount).
func (s *sysSnapshot) apply(now map[string]*fsEntry, sel func(string) bool) error {
	dirOnly := map[string]bool{}
	for _, r := range s.Roots {
		dirOnly[r.Path] = r.DirOnly
	}
	var remove, create, modify []string
	for p := range mapsKeys(s.Entries, now) {
		want, have := s.Entries[p], now[p]
		if !sel(p) || sameEntry(want, have) {
			continue
		}
		switch {
		case isAbsent(have):
			create = append(create, p)
		case isAbsent(want):
			remove = append(remove, p)
		case want.Kind != have.Kind || want.Kind == "symlink" && want.Target != have.Target:
			remove = append(remove, p)
			create = append(create, p)
		default:
			modify = append(modify, p)
		}
	}
	depth := func(p string) int { return strings.Count(p, "/") }
	slices.SortFunc(remove, func(a, b string) int { return cmp.Or(depth(b)-depth(a), strings.Compare(a, b)) })
	slices.SortFunc(create, func(a, b string) int { return cmp.Or(depth(a)-depth(b), strings.Compare(a, b)) })
	var errs []error
	for _, p := range remove {
		var err error
		if dirOnly[p] {
			err = os.RemoveAll(p)
		} else {
			err = os.Remove(p)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, p := range create {
		e := s.Entries[p]
		var err error
		switch e.Kind {
		case "dir":
			err = os.Mkdir(p, e.Mode)
		case "file":
			err = writeFileSync(p, e.Data)
		case "symlink":
			err = os.Symlink(e.Target, p)
		default:
			err = fmt.Errorf("cannot re-create %s (%s)", p, e.Kind)
		}
		if err == nil {
			err = setMeta(p, e)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range modify {
		e, h := s.Entries[p], now[p]
		var err error
		if e.Kind == "file" && !bytes.Equal(e.Data, h.Data) {
			err = writeInPlace(p, e.Data)
		}
		if err == nil {
			err = setMeta(p, e)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func setMeta(p string, e *fsEntry) error {
	if err := os.Lchown(p, e.UID, e.GID); err != nil {
		return err
	}
	if e.Kind == "symlink" {
		return nil
	}
	return os.Chmod(p, e.Mode)
}

// writeInPlace truncates and rewrites p without replacing the inode.
func writeInPlace(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

func writeFileSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// captureRoots records the current state of every root.
func captureRoots(roots []snapRoot) (map[string]*fsEntry, error) {
	m := map[string]*fsEntry{}
	for _, r := range roots {
		if err := captureRoot(m, r.Path, r.Tree, 0); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func captureRoot(m map[string]*fsEntry, root string, tree bool, hops int) error {
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		// Record the missing ancestors too, so that directories a test
		// creates on the way (say /etc/docker) are removed again.
		for p := root; ; p = filepath.Dir(p) {
			if _, err := os.Lstat(p); err == nil || p == "/" {
				break
			}
			m[p] = &fsEntry{Kind: "absent"}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !tree || !fi.IsDir() {
		e, err := captureEntry(root, fi)
		if err != nil {
			return err
		}
		m[root] = e
		if e.Kind == "symlink" && hops < 8 {
			target := e.Target
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(root), target)
			}
			return captureRoot(m, filepath.Clean(target), false, hops+1)
		}
		return nil
	}
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		e, err := captureEntry(p, fi)
		if err != nil {
			return err
		}
		m[p] = e
		return nil
	})
}

func captureEntry(p string, fi fs.FileInfo) (*fsEntry, error) {
	e := &fsEntry{Mode: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), MTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID, e.GID = int(st.Uid), int(st.Gid)
	}
	var err error
	switch {
	case fi.Mode().IsRegular():
		e.Kind = "file"
		e.Data, err = os.ReadFile(p)
	case fi.IsDir():
		e.Kind = "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = "symlink"
		e.Mode = 0
		e.Target, err = os.Readlink(p)
	default:
		e.Kind = "other"
	}
	return e, err
}

func isAbsent(e *fsEntry) bool { return e == nil || e.Kind == "absent" }

func sameEntry(a, b *fsEntry) bool {
	if isAbsent(a) || isAbsent(b) {
		return isAbsent(a) == isAbsent(b)
	}
	return a.Kind == b.Kind && a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.Target == b.Target && bytes.Equal(a.Data, b.Data)
}

// diffEntries describes every path whose state differs, sorted.
func diffEntries(old, now map[string]*fsEntry) []string {
	var out []string
	for p := range mapsKeys(old, now) {
		a, b := old[p], now[p]
		if sameEntry(a, b) {
			continue
		}
		switch {
		case isAbsent(a):
			out = append(out, fmt.Sprintf("%s: added %s", p, describe(b)))
		case isAbsent(b):
			out = append(out, fmt.Sprintf("%s: removed (was %s)", p, describe(a)))
		case a.Kind != b.Kind:
			out = append(out, fmt.Sprintf("%s: was %s, now %s", p, describe(a), describe(b)))
		default:
			var what []string
			if a.Target != b.Target {
				what = append(what, fmt.Sprintf("link target %q → %q", a.Target, b.Target))
			}
			if a.Mode != b.Mode {
				what = append(what, fmt.Sprintf("mode %v → %v", a.Mode, b.Mode))
			}
			if a.UID != b.UID || a.GID != b.GID {
				what = append(what, fmt.Sprintf("owner %d:%d → %d:%d", a.UID, a.GID, b.UID, b.GID))
			}
			if !bytes.Equal(a.Data, b.Data) {
				what = append(what, "content changed "+contentDiff(a.Data, b.Data))
			}
			out = append(out, p+": "+strings.Join(what, ", "))
		}
	}
	slices.Sort(out)
	return out
}

func describe(e *fsEntry) string {
	switch e.Kind {
	case "file":
		return fmt.Sprintf("file (%d bytes, %v)", len(e.Data), e.Mode)
	case "symlink":
		return "symlink → " + e.Target
	}
	return e.Kind
}

// contentDiff says how two contents differ: for short text, the lines
// added and removed; otherwise sizes and hashes.
func contentDiff(a, b []byte) string {
	sum := func(d []byte) string { h := sha256.Sum256(d); return hex.EncodeToString(h[:6]) }
	head := fmt.Sprintf("(%d → %d bytes, sha256 %s… → %s…)", len(a), len(b), sum(a), sum(b))
	if len(a)+len(b) > 64<<10 || bytes.IndexByte(a, 0) >= 0 || bytes.IndexByte(b, 0) >= 0 {
		return head
	}
	lines := append(missingLines(a, b, "-"), missingLines(b, a, "+")...)
	if len(lines) == 0 || len(lines) > 20 {
		return head
	}
	return head + ":\n      " + strings.Join(lines, "\n      ")
}

// missingLines lists, marked, the lines of a that b lacks (as multisets).
func missingLines(a, b []byte, mark string) []string {
	left := map[string]int{}
	for _, l := range strings.SplitAfter(string(b), "\n") {
		left[l]++
	}
	var out []string
	for _, l := range strings.SplitAfter(string(a), "\n") {
		if left[l] > 0 {
			left[l]--
		} else if l != "" {
			out = append(out, fmt.Sprintf("%s %q", mark, l))
		}
	}
	return out
}

// mapsKeys yields the union of the keys of a and b.
func mapsKeys(a, b map[string]*fsEntry) iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok && !yield(k) {
				return
			}
		}
	}
}

func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// restoreStaleJournals restores the snapshots that runs killed before their
// cleanup (SIGKILL, a go test timeout) left behind, newest first, so that
// the oldest state wins; it runs under the machine-wide lock.
func restoreStaleJournals(logf func(string, ...any)) error {
	files, _ := filepath.Glob(filepath.Join(journalDir, "journal-*.json"))
	var stale []*sysSnapshot
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s := &sysSnapshot{journal: f}
		if err := json.Unmarshal(b, s); err != nil {
			return fmt.Errorf("reading snapshot journal %s: %w (remove it once the system is checked by hand)", f, err)
		}
		if s.PID != os.Getpid() {
			stale = append(stale, s)
		}
	}
	tmp, _ := filepath.Glob(filepath.Join(journalDir, "journal-*.json.tmp"))
	for _, f := range tmp {
		os.Remove(f) // a journal never completed: its run changed nothing yet
	}
	slices.SortFunc(stale, func(a, b *sysSnapshot) int { return b.Taken.Compare(a.Taken) })
	for _, s := range stale {
		logf("restoring the system snapshot a killed run (pid %d) took at %s: %s", s.PID, s.Taken.Format(time.DateTime), s.journal)
		if err := s.restore(logf); err != nil {
			return fmt.Errorf("restoring %s: %w", s.journal, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// The vendor's manual client steps, each undone.

// appendHostsLine appends line to the hosts file in place, as `echo … |
// sudo tee -a /etc/hosts` does, and returns its undo, which removes exactly
// the bytes it added.
func appendHostsLine(t *testing.T, line string) *undoer {
	t.Helper()
	lockRootEnv(t)
	before, err := os.ReadFile(hostsPath)
	if err != nil {
		t.Fatal(err)
	}
	added := line + "\n"
	if len(before) > 0 && before[len(before)-1] != '\n' {
		added = "\n" + added
	}
	u := onUndo(t, "hosts line "+strconv.Quote(line), func(logf func(string, ...any)) error {
		b, err := os.ReadFile(hostsPath)
		if err != nil {
			return err
		}
		switch {
		case bytes.HasSuffix(b, []byte(added)):
			return writeInPlace(hostsPath, b[:len(b)-len(added)])
		case bytes.Contains(b, []byte(added)):
			logf("%s changed after the line was added; removing only the line", hostsPath)
			return writeInPlace(hostsPath, bytes.Replace(b, []byte(added), nil, 1))
		}
		return nil
	})
	f, err := os.OpenFile(hostsPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(added)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatalf("appending to %s: %v", hostsPath, err)
	}
	return u
}

// installDockerCA writes pem as /etc/docker/certs.d/<endpoint>/ca.crt (the
// vendor's "download the certificate" step; Docker reads it on the next
// connection) and returns its undo, which also removes the directories it
// made.
func installDockerCA(t *testing.T, endpoint string, pem []byte) *undoer {
	t.Helper()
	lockRootEnv(t)
	dir := filepath.Join(dockerCertsDDir, endpoint)
	var made []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == "/" {
			break
		}
		made = append(made, p)
	}
	file := filepath.Join(dir, "ca.crt")
	u := onUndo(t, "Docker CA "+file, func(func(string, ...any)) error {
		errs := []error{os.Remove(file)}
		if errors.Is(errs[0], fs.ErrNotExist) {
			errs[0] = nil
		}
		for _, p := range made { // deepest first
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// ---------------------------------------------------------------------------
// Tests of the scaffolding itself.

// TestSnapshotSystemRestoresEveryChange makes the changes `edgecr join`
// makes (and a removal), checks Diff names each, and that the restore
// leaves every tracked byte as it was.
func TestSnapshotSystemRestoresEveryChange(t *testing.T) {
	testenv.NeedRoot(t, "changes /etc/hosts, the trust store, /etc/docker/certs.d and Docker's config.json")
	testenv.NeedCommand(t, "update-ca-certificates", "the restore rebuilds the Debian trust store with it")
	snap := snapshotSystem(t)
	ctx := testDeadlineCtx(t)

	line := "198.18.0.2 ecr.snapshot-test.internal"
	appendHostsLine(t, line)

	// A CA the way the agent installs it, with the tool run the naive way.
	dataDir := filepath.Join(t.TempDir(), "data")
	if _, e, err := edgecrd(t, "init", "--data-dir", dataDir, "--name", "snapshot-test", "--ip", "198.18.0.2"); err != nil {
		t.Fatalf("edgecrd init: %v\n%s", err, e)
	}
	ca, err := os.ReadFile(filepath.Join(dataDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	localCA := filepath.Join(localCADir, "edgecr-e2e-snapshot-test.crt")
	if err := os.WriteFile(localCA, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := rootRun(ctx, nil, "", "update-ca-certificates"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("update-ca-certificates:\n%s", indent(out))
	}
	installDockerCA(t, "ecr.snapshot-test.internal:31001", ca)

	cfg := filepath.Join(dockerConfigDir(), "config.json")
	before, cfgErr := os.ReadFile(cfg)
	if cfgErr == nil {
		if err := writeInPlace(cfg, append(before, ' ')); err != nil {
			t.Fatal(err)
		}
	} else {
		os.MkdirAll(filepath.Dir(cfg), 0o700)
		if err := os.WriteFile(cfg, []byte(`{"credHelpers":{"ecr.snapshot-test.internal:31001":"edgecr"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A removal and a mode change in the trust store.
	links, _ := filepath.Glob(filepath.Join(sslCertsDir, "*.0"))
	if len(links) == 0 {
		t.Fatalf("no hash links in %s", sslCertsDir)
	}
	removed := links[0]
	if err := os.Remove(removed); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(caBundlePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(caBundlePath, fi.Mode().Perm()^0o004); err != nil {
		t.Fatal(err)
	}

	diff := strings.Join(snap.Diff(), "\n")
	t.Logf("differences found:\n%s", indent(diff))
	for _, want := range []string{
		hostsPath + ": content changed",
		strconv.Quote(line + "\n"),
		localCA + ": added file",
		caBundlePath + ": mode",
		removed + ": removed (was symlink",
		filepath.Join(dockerCertsDDir, "ecr.snapshot-test.internal:31001", "ca.crt") + ": added file",
		cfg + ": ",
	} {
		if !strings.Contains(diff, want) {
			t.Errorf("Diff does not report %q", want)
		}
	}
	if cfgErr != nil && !strings.Contains(diff, cfg+": added file") {
		t.Errorf("Diff does not report %s as added", cfg)
	}

	start := time.Now()
	snap.Restore(t)
	t.Logf("restore took %v", time.Since(start).Round(time.Millisecond))
	snap.Verify(t)
	if _, err := os.Stat(snap.journal); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal %s left after a complete restore: %v", snap.journal, err)
	}
}

// TestStaleNetnsIsSwept leaves a namespace, a process in it and a lone veth
// pair the way a killed run does, and checks the sweep removes all of it.
func TestStaleNetnsIsSwept(t *testing.T) {
	testenv.NeedRoot(t, "makes network namespaces")
	testenv.NeedCommand(t, "ip", "makes network namespaces")
	lockRootEnv(t)
	id := randomHex(3)
	ns := fmt.Sprintf("%s%d-%s", netnsPrefix, 1, id) // owned by a pid that is not us
	h, n := vethPrefix+id+"h", vethPrefix+id+"n"
	t.Cleanup(func() { removeNetns(ns, t.Logf); ipCmd("link", "del", h) })
	for _, s := range [][]string{{"netns", "add", ns}, {"link", "add", h, "type", "veth", "peer", "name", n}} {
		if _, err := ipCmd(s...); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sleeper.Wait(); close(exited) }()
	t.Cleanup(func() { sleeper.Process.Kill(); <-exited })

	var logs []string
	if err := sweepStaleNetns(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	t.Logf("sweep:\n%s", indent(strings.Join(logs, "\n")))
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("process in the stale namespace still runs")
	}
	list, _ := ipCmd("netns", "list")
	if slices.Contains(netnsNames(list), ns) {
		t.Errorf("stale namespace %s still listed:\n%s", ns, list)
	}
	links, _ := ipCmd("-o", "link", "show")
	if names := linkNames(links); slices.Contains(names, h) || slices.Contains(names, n) {
		t.Errorf("stale veth %s/%s still present:\n%s", h, n, links)
	}
}
