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
	"slices"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/internal/childproc"
)

// device is the edgecrd under test: one data dir and port across
// restarts, one child process at a time.
type device struct {
	bin, logPath, addr string
	user, password     string
	roots              *x509.CertPool
	caPin              string // sha256:HEX of the CA's DER, from edgecrd info
	// where names the state for every edgecrd command: --data-dir DIR or
	// --storage URL; env is their environment (the bucket's credentials).
	where []string
	env   []string
	quota string // serve --quota; "" for none

	proc childproc.Proc // killed and started by the fault injector, its pid read by the sampler
}

// buildBinaries builds the agent, its credential helper and (withServer)
// edgecrd into dir/bin and returns that directory.
func buildBinaries(ctx context.Context, dir string, withServer bool) (string, error) {
	bin := filepath.Join(dir, "bin")
	pkgs := []string{"github.com/edgecr/edgecr/cmd/edgecr", "github.com/edgecr/edgecr/cmd/docker-credential-edgecr"}
	if withServer {
		pkgs = append(pkgs, "github.com/edgecr/edgecr/cmd/edgecrd")
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", bin, err)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", bin + string(os.PathSeparator)}, pkgs...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", strings.Join(pkgs, " "), err, out.Bytes())
	}
	return bin, nil
}

// newDevice initialises the device's state: in dir's data dir, or with
// storage (an s3:// URL) in that bucket, env holding its credentials.
func newDevice(ctx context.Context, bin, dir, storage string, env []string, quota string) (*device, error) {
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	d := &device{bin: bin, logPath: filepath.Join(dir, "edgecrd.log"),
		addr: net.JoinHostPort("127.0.0.1", port), env: env, quota: quota,
		where: []string{"--data-dir", filepath.Join(dir, "data")}}
	if storage != "" {
		d.where = []string{"--storage", storage}
	}
	out, err := d.command(ctx, "init", "--name", "soak", "--ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running edgecrd init: %w: %s", err, out)
	}
	out, err = d.command(ctx, "info", "-o", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("running edgecrd info: %w", err)
	}
	var info struct{ Username, Password, CAFile, CAFingerprint string }
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("parsing edgecrd info: %w", err)
	}
	d.caPin = info.CAFingerprint
	if storage == "" {
		pem, err := os.ReadFile(info.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading device CA: %w", err)
		}
		d.roots = x509.NewCertPool()
		if !d.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in device CA file %s", info.CAFile)
		}
	}
	// On a bucket the CA is no file: start fetches it from the join API
	// and checks it against caPin.
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
	args := append([]string{"serve"}, d.where...)
	args = append(args, "--listen", d.addr, "--ui-listen", "off", "--gc-schedule", "off")
	if d.quota != "" {
		args = append(args, "--quota", d.quota)
	}
	if d.where[0] == "--storage" {
		// A replica on a bucket serves its own address (else the
		// machine's default route's, which the CA may not certify).
		args = append(args, "--name", "soak", "--ip", "127.0.0.1")
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	start := time.Now()
	exited, err := d.proc.Start(cmd)
	if err != nil {
		return 0, fmt.Errorf("starting edgecrd: %w", err)
	}
	tc := &tls.Config{RootCAs: d.roots, ServerName: "127.0.0.1"}
	if d.roots == nil {
		tc = &tls.Config{InsecureSkipVerify: true} // the first start on a bucket: fetchCA checks the pin
	}
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 2 * time.Second}
	defer probe.CloseIdleConnections()
	for {
		if resp, err := probe.Get("https://" + d.addr + "/v2/"); err == nil {
			resp.Body.Close()
			took := time.Since(start)
			if d.roots == nil {
				if err := d.fetchCA(probe); err != nil {
					return 0, err
				}
			}
			return took, nil
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
func (d *device) kill() { d.proc.Kill() }

// pid is the running edgecrd's process id, 0 when none runs.
func (d *device) pid() int { return d.proc.Pid() }

// command is an edgecrd admin command on the device's state.
func (d *device) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, append(slices.Clone(args), d.where...)...)
	cmd.Env = d.env
	return cmd
}

// admin runs an edgecrd admin command and returns its standard output;
// the error holds its standard error.
func (d *device) admin(ctx context.Context, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := d.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("edgecrd %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), nil
}

// gc runs `edgecrd gc` next to the server, as an operator's cron job would.
func (d *device) gc(ctx context.Context, grace time.Duration) error {
	_, err := d.admin(ctx, "gc", "--grace", grace.String(), "--delete-untagged")
	return err
}

// fetchCA downloads the device CA from the join API, as the agent does,
// and checks it against the fingerprint edgecrd info printed.
func (d *device) fetchCA(c *http.Client) error {
	resp, err := c.Get("https://" + d.addr + "/edgecr/v1/ca")
	if err != nil {
		return fmt.Errorf("fetching the device CA: %w", err)
	}
	roots, err := benchutil.PinnedCA(resp, d.caPin)
	if err != nil {
		return err
	}
	d.roots = roots
	return nil
}
