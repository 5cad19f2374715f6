package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// The comparison (-compare) runs every server as its own process, so that
// /proc/<pid>/stat holds that server's CPU time and nothing else: edgecrd
// and zot from their binaries, distribution (its handlers.NewApp, what
// `registry serve` runs) and the TLS copy limit as this program re-executed
// in a child role named by childEnv.
const childEnv = "EDGECR_BENCH_CHILD"

// runChild is main for a child role; it returns the exit status.
func runChild(role string, args []string) int {
	var err error
	switch role {
	case "distribution":
		err = serveDistribution(args)
	case "tlscopy":
		err = serveTLSCopy(args)
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// serveDistribution serves distribution's registry app (handlers.NewApp)
// from the configuration file args[0] on its http.addr with its TLS
// certificate until SIGTERM: what `registry serve` runs, without its
// tracing and systemd wrappers (their modules are not in go.mod).
func serveDistribution(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one argument, the configuration file; got %q", args)
	}
	f, err := os.Open(args[0])
	if err != nil {
		return fmt.Errorf("opening the distribution configuration: %w", err)
	}
	c, err := configuration.Parse(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("parsing the distribution configuration %s: %w", args[0], err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	app, err := newApp(ctx, c)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: c.HTTP.Addr, Handler: app, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServeTLS(c.HTTP.TLS.Certificate, c.HTTP.TLS.Key); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving distribution: %w", err)
	}
	return nil
}

// serveTLSCopy answers every GET with the file args[3] through
// http.ServeContent on a TLS listener at args[0] (certificate args[1], key
// args[2]): the fastest a Go server can hand the bytes of a cached file to
// this client over TLS, the limit a registry's pull is measured against.
func serveTLSCopy(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want ADDR CERT KEY FILE, got %q", args)
	}
	path := args[3]
	srv := &http.Server{
		Addr:              args[0],
		ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, r, "", time.Time{}, f)
		}),
	}
	return srv.ListenAndServeTLS(args[1], args[2])
}

// child is a server process of the comparison.
type child struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logPath string
	stopped bool
}

// startChild starts cmd with its output in logPath and waits until base
// answers HTTP (any status: the registries want auth).
func startChild(ctx context.Context, name string, cmd *exec.Cmd, logPath, base string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the %s log: %w", name, err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	if err := c.awaitHTTP(ctx, base); err != nil {
		return c, fmt.Errorf("%w\n%s log (tail):\n%s", err, name, tail(logPath))
	}
	return c, nil
}

func (c *child) awaitHTTP(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer probe.CloseIdleConnections()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("building the readiness probe of %s: %w", c.name, err)
		}
		if resp, err := probe.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited before it answered on %s: %v", c.name, base, c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s on %s: %w", c.name, base, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and kills the process if it has not exited within 10 s.
func (c *child) stop() error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	if err := c.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing %s (pid %d): %w", c.name, c.pid(), err)
	}
	<-c.exited
	return nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// tlsFiles writes a throwaway certificate and key for 127.0.0.1 into dir.
func tlsFiles(dir string) (certPath, keyPath string, roots *x509.CertPool, err error) {
	cert, err := selfSigned()
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", nil, fmt.Errorf("encoding the throwaway key: %w", err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		return "", "", nil, fmt.Errorf("writing the throwaway certificate: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, fmt.Errorf("writing the throwaway key: %w", err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return certPath, keyPath, roots, nil
}

// htpasswdFile writes one user with a bcrypt hash of the given cost, as
// `htpasswd -B -C cost` does.
func htpasswdFile(dir string, cost int) (path, user, password string, err error) {
	user, password = "bench", rand.Text()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", "", "", fmt.Errorf("hashing the htpasswd password: %w", err)
	}
	path = filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return "", "", "", fmt.Errorf("writing htpasswd: %w", err)
	}
	return path, user, password, nil
}

// loopbackAddr is 127.0.0.1 with a free port.
func loopbackAddr() (addr, port string, err error) {
	port, err = benchutil.FreePort()
	if err != nil {
		return "", "", err
	}
	return net.JoinHostPort("127.0.0.1", port), port, nil
}

// startDistribution runs distribution v3 (this module's version) as a child
// with filesystem storage under dir and htpasswd auth at bcrypt cost.
func startDistribution(ctx context.Context, dir string, cost int) (*child, target, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, target{}, fmt.Errorf("creating the distribution dir: %w", err)
	}
	certPath, keyPath, roots, err := tlsFiles(dir)
	if err != nil {
		return nil, target{}, err
	}
	hp, user, password, err := htpasswdFile(dir, cost)
	if err != nil {
		return nil, target{}, err
	}
	addr, _, err := loopbackAddr()
	if err != nil {
		return nil, target{}, err
	}
	doc := map[string]any{
		"version": "0.1",
		"log":     map[string]any{"level": "error", "accesslog": map[string]any{"disabled": true}},
		"storage": map[string]any{
			"filesystem":  map[string]any{"rootdirectory": filepath.Join(dir, "registry")},
			"delete":      map[string]any{"enabled": true},
			"cache":       map[string]any{"blobdescriptor": "inmemory"},
			"redirect":    map[string]any{"disable": true},
			"maintenance": map[string]any{"uploadpurging": map[string]any{"enabled": false}},
		},
		"http": map[string]any{
			"addr":   addr,
			"secret": rand.Text(),
			"tls":    map[string]any{"certificate": certPath, "key": keyPath},
		},
		"auth": map[string]any{"htpasswd": map[string]any{"realm": "bench", "path": hp}},
	}
	y, err := yaml.Marshal(doc)
	if err != nil {
		return nil, target{}, fmt.Errorf("encoding the distribution configuration: %w", err)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, y, 0o600); err != nil {
		return nil, target{}, fmt.Errorf("writing the distribution configuration: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, target{}, fmt.Errorf("finding this program to run distribution: %w", err)
	}
	cmd := exec.Command(self, cfgPath)
	cmd.Env = append(os.Environ(), childEnv+"=distribution")
	base := "https://" + addr
	c, err := startChild(ctx, "distribution", cmd, filepath.Join(dir, "log"), base)
	return c, target{base: base, user: user, password: password, roots: roots}, err
}

// Zot is not on the Go module proxy; .ci/build-zot builds it from a copy
// of its repository into the tools cache.
const zotVersion = "v2.1.20"

// defaultZot is where .ci/build-zot puts the binary.
func defaultZot() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "edgecr-tools", "zot-"+zotVersion)
}

// errNoZot explains how to get the zot binary when it is missing.
var errNoZot = errors.New("zot " + zotVersion + " is not built: zot is not on the Go module proxy; clone https://github.com/project-zot/zot (e.g. git clone --bare https://github.com/project-zot/zot zot.git) and run .ci/build-zot zot.git, which builds it into ${XDG_CACHE_HOME:-$HOME/.cache}/edgecr-tools/zot-" + zotVersion + " (or give -zot PATH)")

// startZot runs zot with local storage under dir (its defaults otherwise:
// dedupe on, no fsync on upload) and htpasswd auth at bcrypt cost. With
// commit, zot fsyncs an upload before it becomes a blob (its "commit"
// storage option), as edgecrd and distribution do.
func startZot(ctx context.Context, bin, dir string, cost int, commit bool) (*child, target, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, target{}, fmt.Errorf("creating the zot dir: %w", err)
	}
	certPath, keyPath, roots, err := tlsFiles(dir)
	if err != nil {
		return nil, target{}, err
	}
	hp, user, password, err := htpasswdFile(dir, cost)
	if err != nil {
		return nil, target{}, err
	}
	addr, port, err := loopbackAddr()
	if err != nil {
		return nil, target{}, err
	}
	doc := map[string]any{
		"distSpecVersion": "1.1.1",
		"storage":         map[string]any{"rootDirectory": filepath.Join(dir, "storage"), "commit": commit},
		"http": map[string]any{
			"address": "127.0.0.1",
			"port":    port,
			"realm":   "bench",
			"tls":     map[string]any{"cert": certPath, "key": keyPath},
			"auth":    map[string]any{"htpasswd": map[string]any{"path": hp}},
		},
		"log": map[string]any{"level": "error"},
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, target{}, fmt.Errorf("encoding the zot configuration: %w", err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, j, 0o600); err != nil {
		return nil, target{}, fmt.Errorf("writing the zot configuration: %w", err)
	}
	base := "https://" + addr
	c, err := startChild(ctx, "zot", exec.Command(bin, "serve", cfgPath), filepath.Join(dir, "log"), base)
	return c, target{base: base, user: user, password: password, roots: roots}, err
}

// startTLSCopy writes size bytes of the wyrand stream for seed to a file
// under dir, reads it once (into the page cache) and serves it from a
// child; it returns the file's digest.
func startTLSCopy(ctx context.Context, dir string, seed uint64, size int64) (*child, target, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, target{}, "", fmt.Errorf("creating the TLS copy dir: %w", err)
	}
	certPath, keyPath, roots, err := tlsFiles(dir)
	if err != nil {
		return nil, target{}, "", err
	}
	file := filepath.Join(dir, "blob")
	dg, err := writeBlobFile(file, seed, size)
	if err != nil {
		return nil, target{}, "", err
	}
	addr, _, err := loopbackAddr()
	if err != nil {
		return nil, target{}, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, target{}, "", fmt.Errorf("finding this program to run the TLS copy server: %w", err)
	}
	cmd := exec.Command(self, addr, certPath, keyPath, file)
	cmd.Env = append(os.Environ(), childEnv+"=tlscopy")
	base := "https://" + addr
	c, err := startChild(ctx, "TLS copy", cmd, filepath.Join(dir, "log"), base)
	return c, target{base: base, roots: roots}, dg, err
}

func writeBlobFile(path string, seed uint64, size int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", path, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(newWyrand(seed), size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	// Read once, so the server streams from the page cache.
	if f, err = os.Open(path); err == nil {
		_, err = io.Copy(io.Discard, f)
		f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return sum(h), nil
}
