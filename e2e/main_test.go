// Package e2e builds the binaries once and drives them as a user would.
package e2e

import (
	"bytes"
	"cmp"
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
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// bin holds the paths of the binaries built for this run.
var bin struct {
	edgecrd, edgecr, helper string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgecr-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		bin.edgecrd = filepath.Join(dir, "edgecrd"+exe())
		bin.edgecr = filepath.Join(dir, "edgecr"+exe())
		bin.helper = filepath.Join(dir, "docker-credential-edgecr"+exe())
		for out, pkg := range map[string]string{bin.edgecrd: "./cmd/edgecrd", bin.edgecr: "./cmd/edgecr", bin.helper: "./cmd/docker-credential-edgecr"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = root
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: building %s: %v\n", pkg, err)
				return 1
			}
		}
		code := testenv.Main(m) // with one line of what was skipped and why
		// After the last test: what root tests keep on the machine
		// between them (lock file, journal dir) goes.
		if err := releaseRootEnv(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			code = cmp.Or(code, 1)
		}
		return code
	}()
	os.Exit(code)
}

func exe() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding module root: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// need skips a test whose prerequisite is missing (fails it in CI).
func need(t *testing.T, ok bool, reason string) {
	t.Helper()
	testenv.Need(t, ok, reason)
}

// device is an edgecrd process with its data dir.
type device struct {
	t       *testing.T
	dataDir string
	addr    string // 127.0.0.1:port
	cmd     *exec.Cmd
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	exited  chan struct{}
	info    deviceInfo
	uiURL   string // https://127.0.0.1:port/ of its web UI; "" with --ui-listen off
}

type deviceInfo struct {
	Endpoint      string `json:"endpoint"`
	IPAddress     string `json:"ipAddress"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	CAFile        string `json:"caFile"`
	CAFingerprint string `json:"caFingerprint"`
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// edgecrd runs the binary to completion.
func edgecrd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin.edgecrd, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// uiURLLine is serve's line that says where the web UI is.
var uiURLLine = regexp.MustCompile(`(?m)^Web UI: +(https://\S+/)`)

// startDevice starts `edgecrd serve` on a fresh (or given) data dir and
// waits until /healthz answers.
func startDevice(t *testing.T, dataDir string, extra ...string) *device {
	t.Helper()
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), "data")
	}
	port := freePort(t)
	d := &device{t: t, dataDir: dataDir, addr: fmt.Sprintf("127.0.0.1:%d", port), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	args := []string{"serve", "--data-dir", dataDir, "--name", "e2e", "--ip", "198.18.0.1", "--listen", d.addr}
	if !slices.Contains(extra, "--ui-listen") {
		// Every device gets its web UI, on a port of its own.
		args = append(args, "--ui-listen", "127.0.0.1:0")
	}
	args = append(args, extra...)
	d.cmd = exec.Command(bin.edgecrd, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting edgecrd: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-d.exited:
			t.Fatalf("edgecrd exited during start: %v\nstderr:\n%s", d.cmd.ProcessState, d.stderr)
		default:
		}
		if c, err := tls.Dial("tcp", d.addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgecrd did not listen on %s; stderr:\n%s", d.addr, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// serve prints its addresses before it accepts connections.
	if m := uiURLLine.FindStringSubmatch(d.stdout.String()); m != nil {
		d.uiURL = m[1]
	}
	out, errOut, err := edgecrd(t, "info", "--data-dir", dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd info: %v\n%s", err, errOut)
	}
	if err := json.Unmarshal([]byte(out), &d.info); err != nil {
		t.Fatalf("parsing edgecrd info -o json: %v\n%s", err, out)
	}
	return d
}

func (d *device) kill() {
	if d.cmd.Process != nil {
		d.cmd.Process.Kill()
		<-d.exited
	}
}

func (d *device) signal(sig syscall.Signal) { d.cmd.Process.Signal(sig) }

func (d *device) caPool() *x509.CertPool {
	d.t.Helper()
	b, err := os.ReadFile(d.info.CAFile)
	if err != nil {
		d.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		d.t.Fatal("CA file holds no certificate")
	}
	return pool
}

func (d *device) transport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.caPool()}, ForceAttemptHTTP2: true}
}

func (d *device) get(ctx context.Context, path string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+d.addr+path, nil)
	req.SetBasicAuth(d.info.Username, d.info.Password)
	return (&http.Client{Transport: d.transport()}).Do(req)
}

// lockedBuffer collects a running process's output; tests read it while the
// process still writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
