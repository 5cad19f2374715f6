package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// craneVersion is the crane measured: the go-containerregistry version
// edgecr is built with.
const craneVersion = "v0.22.1"

// binaries are the programs of the run.
type binaries struct {
	edgecrd, edgecr, helper, crane string
}

func build(ctx context.Context, dir, crane string, log func(string, ...any)) (*binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("finding the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	b := &binaries{
		edgecrd: filepath.Join(dir, "edgecrd"),
		edgecr:  filepath.Join(dir, "edgecr"),
		helper:  filepath.Join(dir, "docker-credential-edgecr"),
		crane:   crane,
	}
	for bin, pkg := range map[string]string{b.edgecrd: "./cmd/edgecrd", b.edgecr: "./cmd/edgecr", b.helper: "./cmd/docker-credential-edgecr"} {
		log("building %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, out)
		}
	}
	if b.crane == "" {
		log("building crane %s (go install)", craneVersion)
		gobin := filepath.Join(dir, "gobin")
		cmd := exec.CommandContext(ctx, "go", "install", "github.com/google/go-containerregistry/cmd/crane@"+craneVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building crane: %w\n%s", err, out)
		}
		b.crane = filepath.Join(gobin, "crane")
	}
	return b, nil
}

// device is an edgecrd serving on loopback.
type device struct {
	dataDir string
	addr    string // 127.0.0.1:port
	info    struct {
		Endpoint string `json:"endpoint"` // registry host:port
		Username string `json:"username"`
		Password string `json:"password"`
		CAFile   string `json:"caFile"`
	}
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *os.File
}

func startDevice(ctx context.Context, b *binaries, dir, nameArg string) (*device, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	d := &device{dataDir: filepath.Join(dir, nameArg), addr: addr, exited: make(chan struct{})}
	if d.stderr, err = os.Create(filepath.Join(dir, nameArg+".log")); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(b.edgecrd, "serve", "--data-dir", d.dataDir, "--name", nameArg, "--ip", "198.18.0.1", "--listen", addr, "--ui-listen", "off")
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting edgecrd: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("edgecrd exited during start (log: %s)", d.stderr.Name())
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		default:
		}
		if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("edgecrd did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.CommandContext(ctx, b.edgecrd, "info", "--data-dir", d.dataDir, "-o", "json").Output()
	if err == nil {
		err = json.Unmarshal(out, &d.info)
	}
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("edgecrd info: %w", err)
	}
	return d, nil
}

func (d *device) stop() {
	if d.cmd.Process != nil {
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.stderr.Close()
}

func (d *device) token(ctx context.Context, b *binaries) (string, error) {
	out, err := exec.CommandContext(ctx, b.edgecrd, "token", "create", "--data-dir", d.dataDir, "--role", "push", "-o", "json").Output()
	if err != nil {
		return "", fmt.Errorf("edgecrd token create: %w", err)
	}
	var tk struct{ Token string }
	if err := json.Unmarshal(out, &tk); err != nil {
		return "", fmt.Errorf("edgecrd token create -o json: %w", err)
	}
	return tk.Token, nil
}

// admin reaches the device as its admin from this process: its CA, its
// address, whatever the name.
func (d *device) admin() ([]remote.Option, error) {
	tr, err := d.transport()
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: d.info.Username, Password: d.info.Password})}, nil
}

// transport is go-containerregistry's default transport trusting the
// device's CA and dialing its address.
func (d *device) transport() (*http.Transport, error) {
	ca, err := os.ReadFile(d.info.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", d.info.CAFile)
	}
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, d.addr)
	}
	return tr, nil
}

// client is a sandboxed client machine joined to the devices with edgecr,
// and the environment crane runs with.
type client struct {
	root     string
	env      []string // edgecr's
	craneEnv []string
}

func newClient(ctx context.Context, b *binaries, dir string, devs ...*device) (*client, error) {
	c := &client{root: filepath.Join(dir, "root")}
	for _, d := range []string{"etc/ssl/certs", "usr/local/share/ca-certificates", "usr/share/ca-certificates", "etc/ca-certificates/update.d", "etc/docker"} {
		if err := os.MkdirAll(filepath.Join(c.root, d), 0o755); err != nil {
			return nil, err
		}
	}
	for f, data := range map[string]string{"etc/os-release": "ID=debian\nVERSION_ID=12\n", "etc/hosts": "127.0.0.1 localhost\n", "etc/ca-certificates.conf": ""} {
		if err := os.WriteFile(filepath.Join(c.root, f), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	uca, err := exec.LookPath("update-ca-certificates")
	if err != nil {
		return nil, fmt.Errorf("the sandboxed client's trust store is Debian's: %w", err)
	}
	if out, err := exec.CommandContext(ctx, uca, "--fresh",
		"--certsconf", filepath.Join(c.root, "etc/ca-certificates.conf"),
		"--certsdir", filepath.Join(c.root, "usr/share/ca-certificates"),
		"--localcertsdir", filepath.Join(c.root, "usr/local/share/ca-certificates"),
		"--etccertsdir", filepath.Join(c.root, "etc/ssl/certs"),
		"--hooksdir", filepath.Join(c.root, "etc/ca-certificates/update.d")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("preparing the sandbox trust store: %w\n%s", err, out)
	}
	dockerDir := filepath.Join(dir, "docker")
	if err := os.MkdirAll(dockerDir, 0o700); err != nil {
		return nil, err
	}
	c.env = append(os.Environ(), "DOCKER_CONFIG="+dockerDir, "EDGECR_CONFIG_DIR="+filepath.Join(dir, "cred"),
		"PATH="+filepath.Dir(b.helper)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, d := range devs {
		tok, err := d.token(ctx, b)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, b.edgecr, "join", "https://"+d.addr, "--token", tok, "--root", c.root)
		cmd.Env = c.env
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("edgecr join %s: %w\n%s", d.addr, err, out)
		}
	}

	// crane: both CAs in one bundle, the admin credential for both
	// addresses in its own Docker config.
	var bundle []byte
	auths := map[string]map[string]string{}
	for _, d := range devs {
		ca, err := os.ReadFile(d.info.CAFile)
		if err != nil {
			return nil, err
		}
		bundle = append(bundle, ca...)
		auths[d.addr] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(d.info.Username + ":" + d.info.Password))}
	}
	craneDir := filepath.Join(dir, "crane-docker")
	if err := os.MkdirAll(craneDir, 0o700); err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(map[string]any{"auths": auths})
	if err := os.WriteFile(filepath.Join(craneDir, "config.json"), cfg, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cas.pem"), bundle, 0o644); err != nil {
		return nil, err
	}
	c.craneEnv = append(os.Environ(), "DOCKER_CONFIG="+craneDir, "SSL_CERT_FILE="+filepath.Join(dir, "cas.pem"))
	return c, nil
}

// bigImage is an OCI image of n layers of size random bytes each (a fast
// PRNG: the bytes do not compress, and the layers are stored as they are).
func bigImage(n int, size int64) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	seed := [32]byte{'c', 'p', 'b', 'e', 'n', 'c', 'h'}
	rng := rand.NewChaCha8(seed)
	for range n {
		b := make([]byte, size)
		if _, err := rng.Read(b); err != nil {
			return nil, err
		}
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer(b, types.OCILayer)); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cfg)
}

// imageBytes is what a copy of img moves: manifest, config and layers.
func imageBytes(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n, err := img.Size()
	if err != nil {
		return 0, err
	}
	n += m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

func ref(s string) (name.Reference, error) { return name.ParseReference(s) }
