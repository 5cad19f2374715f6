package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// binaries are the three commands, built from this module.
type binaries struct {
	edgecrd, edgecr, helper string
}

// buildBinaries compiles cmd/edgecrd, cmd/edgecr and
// cmd/docker-credential-edgecr into dir, in one go build. It runs in the
// current directory, which must be inside the edgecr module (go run
// ./e2e/agentbench from the repository root).
func buildBinaries(ctx context.Context, dir string) (binaries, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/edgecr/edgecr/cmd/edgecrd",
		"github.com/edgecr/edgecr/cmd/edgecr",
		"github.com/edgecr/edgecr/cmd/docker-credential-edgecr")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return binaries{}, fmt.Errorf("building the commands: %w\n%s", err, out.Bytes())
	}
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	b := binaries{
		edgecrd: filepath.Join(dir, "edgecrd"+exe),
		edgecr:  filepath.Join(dir, "edgecr"+exe),
		helper:  filepath.Join(dir, "docker-credential-edgecr"+exe),
	}
	for _, p := range []string{b.edgecrd, b.edgecr, b.helper} {
		if _, err := os.Stat(p); err != nil {
			return binaries{}, fmt.Errorf("building the commands: %w", err)
		}
	}
	return b, nil
}

// device is a running `edgecrd serve` child process.
type device struct {
	bin      string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error
	dataDir  string
	logPath  string
	addr     string // 127.0.0.1:PORT
	registry string // ecr.bench.internal:PORT, from edgecrd info
}

// startDevice runs `edgecrd serve --name bench --ip 127.0.0.1` on a free
// loopback port with a fresh data dir under dir, and waits until it answers
// /healthz. The caller must call stop, also when startDevice fails after
// the process started (it then returns a non-nil device).
func startDevice(ctx context.Context, bin, dir string) (*device, error) {
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	d := &device{
		bin:     bin,
		exited:  make(chan struct{}),
		dataDir: filepath.Join(dir, "edgecrd-data"),
		logPath: filepath.Join(dir, "edgecrd.log"),
		addr:    net.JoinHostPort("127.0.0.1", port),
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating edgecrd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	d.cmd = exec.Command(bin, "serve", "--data-dir", d.dataDir, "--name", "bench", "--ip", "127.0.0.1", "--listen", d.addr, "--ui-listen", "off")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = benchutil.ChildAttr()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	if err := d.awaitReady(ctx); err != nil {
		return d, fmt.Errorf("%w\n%s", err, benchutil.LogTail(d.logPath))
	}
	return d, nil
}

func (d *device) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Only a readiness probe: join checks the device against the token's pin.
	if err := benchutil.AwaitHealthz(ctx, "https://"+d.addr+"/healthz", d.addr, d.exited, func() error { return d.waitErr }); err != nil {
		return err
	}
	out, err := d.admin(ctx, "info", "--data-dir", d.dataDir, "-o", "json")
	if err != nil {
		return err
	}
	var info struct {
		Endpoint string `json:"endpoint"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Endpoint == "" {
		return fmt.Errorf("parsing edgecrd info -o json (%v): %s", err, out)
	}
	d.registry = info.Endpoint
	return nil
}

// token creates a one-use push token (`edgecrd token create -o json`).
func (d *device) token(ctx context.Context) (string, error) {
	out, err := d.admin(ctx, "token", "create", "--data-dir", d.dataDir, "-o", "json")
	if err != nil {
		return "", err
	}
	var tk struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tk); err != nil || tk.Token == "" {
		return "", fmt.Errorf("parsing edgecrd token create -o json: %v", err)
	}
	return tk.Token, nil
}

// admin runs an edgecrd subcommand and returns its standard output.
func (d *device) admin(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("running edgecrd %s: %w", args[0], err)
	}
	return out, nil
}

// stop asks edgecrd to shut down (SIGTERM) and kills it if it has not
// exited within 10 s (at once where SIGTERM cannot be sent: Windows).
func (d *device) stop() error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		select {
		case <-d.exited:
			return nil
		case <-time.After(10 * time.Second):
		}
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing edgecrd (pid %d): %w", d.cmd.Process.Pid, err)
	}
	<-d.exited
	return nil
}
