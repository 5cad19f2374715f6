package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
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
}

// infoJSON is the part of `edgecrd info -o json` the benchmark reads.
type infoJSON struct {
	Username string `json:"username"`
	Password string `json:"password"`
	CAFile   string `json:"caFile"`
}

// startEdgecrd runs `edgecrd serve` on a free loopback port with a fresh
// data dir under dir and waits until it answers /healthz. The caller must
// call stop, also when startEdgecrd fails after the process started.
func startEdgecrd(ctx context.Context, bin, dir string) (*edgecrd, error) {
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "edgecrd-data")
	logPath := filepath.Join(dir, "edgecrd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating edgecrd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	addr := net.JoinHostPort("127.0.0.1", port)
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--name", "bench", "--listen", addr, "--ui-listen", "off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	e := &edgecrd{cmd: cmd, exited: make(chan struct{}), logPath: logPath, base: "https://" + addr}
	go func() {
		e.waitErr = cmd.Wait()
		close(e.exited)
	}()
	if err := e.awaitReady(ctx, bin, dataDir); err != nil {
		return e, fmt.Errorf("%w\n%s", err, benchutil.LogTail(e.logPath))
	}
	return e, nil
}

func (e *edgecrd) awaitReady(ctx context.Context, bin, dataDir string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// serve writes the state (CA, admin secret) before it listens, so
	// info works once /healthz answers; until then poll without trust.
	if err := benchutil.AwaitHealthz(ctx, e.base+"/healthz", e.base, e.exited, func() error { return e.waitErr }); err != nil {
		return err
	}

	out, err := exec.CommandContext(ctx, bin, "info", "--data-dir", dataDir, "-o", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return fmt.Errorf("running edgecrd info: %w", err)
	}
	var info infoJSON
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("parsing edgecrd info: %w", err)
	}
	pem, err := os.ReadFile(info.CAFile)
	if err != nil {
		return fmt.Errorf("reading device CA: %w", err)
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in device CA file %s", info.CAFile)
	}
	e.user, e.password = info.Username, info.Password
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
