package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// device is the edgecrd under test: one data dir and port across
// restarts, one child process at a time.
type device struct {
	bin, dataDir, logPath, addr string
	user, password              string
	roots                       *x509.CertPool

	cmd    *exec.Cmd
	exited chan struct{}
}

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

func newDevice(ctx context.Context, bin, dir string) (*device, error) {
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	d := &device{bin: bin, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "edgecrd.log"),
		addr: net.JoinHostPort("127.0.0.1", port)}
	out, err := exec.CommandContext(ctx, bin, "init", "--data-dir", d.dataDir, "--name", "soak", "--ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running edgecrd init: %w: %s", err, out)
	}
	out, err = exec.CommandContext(ctx, bin, "info", "--data-dir", d.dataDir, "-o", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("running edgecrd info: %w", err)
	}
	var info struct{ Username, Password, CAFile string }
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("parsing edgecrd info: %w", err)
	}
	pem, err := os.ReadFile(info.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading device CA: %w", err)
	}
	d.roots = x509.NewCertPool()
	if !d.roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in device CA file %s", info.CAFile)
	}
	d.user, d.password = info.Username, info.Password
	return d, nil
}

// start runs `edgecrd serve` and returns how long it took until /v2/
// answered (401 without credentials is an answer).
func (d *device) start(ctx context.Context) (time.Duration, error) {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening edgecrd log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, "serve", "--data-dir", d.dataDir, "--listen", d.addr,
		"--ui-listen", "off", "--gc-schedule", "off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting edgecrd: %w", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	exited := d.exited
	go func() { cmd.Wait(); close(exited) }()
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.roots, ServerName: "127.0.0.1"}}, Timeout: 2 * time.Second}
	defer probe.CloseIdleConnections()
	for {
		if resp, err := probe.Get("https://" + d.addr + "/v2/"); err == nil {
			resp.Body.Close()
			return time.Since(start), nil
		}
		select {
		case <-exited:
			return 0, fmt.Errorf("edgecrd exited at start\n%s", benchutil.LogTail(d.logPath))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("edgecrd does not answer a minute after start\n%s", benchutil.LogTail(d.logPath))
		}
	}
}

// kill ends edgecrd with SIGKILL (no shutdown of any kind) and reaps it.
func (d *device) kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

// gc runs `edgecrd gc` next to the server, as an operator's cron job would.
func (d *device) gc(ctx context.Context, grace time.Duration) error {
	out, err := exec.CommandContext(ctx, d.bin, "gc", "--data-dir", d.dataDir, "--grace", grace.String(), "--delete-untagged").CombinedOutput()
	if err != nil {
		return fmt.Errorf("edgecrd gc: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
