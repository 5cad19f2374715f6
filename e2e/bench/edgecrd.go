package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/e2e/benchutil/s3bucket"
)

// benchDir makes the temporary directory of one benchmark (prefix names
// it) and, when bin is "", builds edgecrd into it. The caller removes tmp.
func benchDir(ctx context.Context, prefix, bin string, progress io.Writer) (tmp, edgecrd string, err error) {
	tmp, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", fmt.Errorf("creating temp dir: %w", err)
	}
	if bin != "" {
		return tmp, bin, nil
	}
	fmt.Fprintln(progress, "building edgecrd")
	if bin, err = buildEdgecrd(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", "", err
	}
	return tmp, bin, nil
}

// buildEdgecrd compiles cmd/edgecrd into dir. It runs in the current
// directory, which must be inside the edgecr module (go run ./e2e/bench
// from the repository root).
func buildEdgecrd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "edgecrd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/edgecr/edgecr/cmd/edgecrd")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building edgecrd: %w\n%s", err, out.Bytes())
	}
	return bin, nil
}

// edgecrd is a running edgecrd child process and what a client needs to
// talk to it.
type edgecrd struct {
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error
	logPath  string
	base     string // https://127.0.0.1:PORT
	user     string
	password string
	roots    *x509.CertPool
	where    []string // --data-dir DIR or --storage URL, for admin commands
	env      []string // nil: this process's
}

// infoJSON is the part of `edgecrd info -o json` the benchmark reads.
type infoJSON struct {
	Username string `json:"username"`
	Password string `json:"password"`
	CAFile   string `json:"caFile"`
	CAPin    string `json:"caFingerprint"`
}

// startEdgecrd runs `edgecrd serve` on a free loopback port with a fresh
// data dir under dir and waits until it answers /healthz. The caller must
// call stop, also when startEdgecrd fails after the process started.
func startEdgecrd(ctx context.Context, bin, dir string) (*edgecrd, error) {
	return startEdgecrdOn(ctx, bin, dir, nil)
}

// startEdgecrdOn is startEdgecrd on bucket b (-storage s3), or on a data
// dir under dir when b is nil. On a bucket it runs `edgecrd init` first
// (serve needs the device's name and address there) and takes the CA from
// the device's /edgecr/v1/ca, checked against info's fingerprint.
func startEdgecrdOn(ctx context.Context, bin, dir string, b *s3bucket.Bucket) (*edgecrd, error) {
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "edgecrd-data")
	where := []string{"--data-dir", dataDir}
	var env []string
	if b != nil {
		where, env = []string{"--storage", b.Storage}, b.Env
		initCmd := exec.CommandContext(ctx, bin, append([]string{"init", "--name", "bench", "--ip", "127.0.0.1"}, where...)...)
		initCmd.Env = env
		if out, err := initCmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("running edgecrd init on %s: %w: %s", b.Storage, err, out)
		}
	}
	logPath := filepath.Join(dir, "edgecrd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating edgecrd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	addr := net.JoinHostPort("127.0.0.1", port)
	args := append([]string{"serve"}, where...)
	args = append(args, "--name", "bench", "--listen", addr, "--ui-listen", "off")
	if b != nil {
		// A device on a bucket serves the address its CA certifies, and
		// collects only when the benchmark says so.
		args = append(args, "--ip", "127.0.0.1", "--gc-schedule", "off")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	e := &edgecrd{cmd: cmd, exited: make(chan struct{}), logPath: logPath, base: "https://" + addr, where: where, env: env}
	go func() {
		e.waitErr = cmd.Wait()
		close(e.exited)
	}()
	if err := e.awaitReady(ctx, bin); err != nil {
		return e, fmt.Errorf("%w\n%s", err, benchutil.LogTail(e.logPath))
	}
	return e, nil
}

func (e *edgecrd) awaitReady(ctx context.Context, bin string) error {
	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	defer hcancel()
	// serve writes the state (CA, admin secret) before it listens, so
	// info works once /healthz answers; until then poll without trust.
	if err := benchutil.AwaitHealthz(hctx, e.base+"/healthz", e.base, e.exited, func() error { return e.waitErr }); err != nil {
		return err
	}

	// info sums the storage used: on a bucket of a large fleet that
	// lists every object (a request per 1000), longer than the wait for
	// /healthz.
	ictx, icancel := context.WithTimeout(ctx, 5*time.Minute)
	defer icancel()
	info := exec.CommandContext(ictx, bin, append([]string{"info", "-o", "json"}, e.where...)...)
	info.Env = e.env
	t0 := time.Now()
	out, err := info.Output()
	if e.where[0] == "--storage" {
		fmt.Fprintf(os.Stderr, "edgecrd info on the bucket: %s\n", time.Since(t0).Round(time.Millisecond))
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return fmt.Errorf("running edgecrd info: %w", err)
	}
	var ij infoJSON
	if err := json.Unmarshal(out, &ij); err != nil {
		return fmt.Errorf("parsing edgecrd info: %w", err)
	}
	e.user, e.password = ij.Username, ij.Password
	if e.where[0] == "--storage" { // on a bucket the CA is no file
		return e.fetchCA(ctx, ij.CAPin)
	}
	pem, err := os.ReadFile(ij.CAFile)
	if err != nil {
		return fmt.Errorf("reading device CA: %w", err)
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in device CA file %s", ij.CAFile)
	}
	return nil
}

// fetchCA takes the device CA from /edgecr/v1/ca (without trust) and checks
// it against pin, edgecrd info's fingerprint.
func (e *edgecrd) fetchCA(ctx context.Context, pin string) error {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/edgecr/v1/ca", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the device CA: %w", err)
	}
	roots, err := benchutil.PinnedCA(resp, pin)
	if err != nil {
		return err
	}
	e.roots = roots
	return nil
}

func (e *edgecrd) pid() int { return e.cmd.Process.Pid }

// cpuMeter starts measuring edgecrd's CPU time; the returned func reports
// what was used since, and false where it cannot be read.
func (e *edgecrd) cpuMeter() func() (cpuUse, bool) {
	start, err := cpuTime(e.pid())
	return func() (cpuUse, bool) {
		end, err2 := cpuTime(e.pid())
		if err != nil || err2 != nil {
			return cpuUse{}, false
		}
		return cpuUse{user: end.user - start.user, sys: end.sys - start.sys}, true
	}
}

// stop asks edgecrd to shut down (SIGTERM) and kills it if it has not
// exited within 10 s.
func (e *edgecrd) stop() error {
	select {
	case <-e.exited:
		return nil
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	if err := e.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing edgecrd (pid %d): %w", e.pid(), err)
	}
	<-e.exited
	return nil
}
