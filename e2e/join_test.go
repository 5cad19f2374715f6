package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// client is a sandboxed client machine: a root for system paths, its own
// Docker config and credential store, and PATH holding the helper.
type client struct {
	t         *testing.T
	root      string
	dockerDir string
	credDir   string
	env       []string
}

const userHosts = "127.0.0.1\tlocalhost\r\n::1 localhost ip6-localhost\r\n# the user's own comment\r\n10.9.9.9 printer.lan\r\n"

func newClient(t *testing.T) *client {
	t.Helper()
	base := t.TempDir()
	c := &client{t: t, root: filepath.Join(base, "root"), dockerDir: filepath.Join(base, "docker"), credDir: filepath.Join(base, "cred")}
	for _, d := range []string{"etc/ssl/certs", "usr/local/share/ca-certificates", "usr/share/ca-certificates", "etc/docker", "etc/containerd", "etc/containers"} {
		if err := os.MkdirAll(filepath.Join(c.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(c.root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=12\n"), 0o644)
	os.WriteFile(filepath.Join(c.root, "etc/hosts"), []byte(userHosts), 0o644)
	// One distribution CA, as any real machine has a few.
	os.MkdirAll(filepath.Join(c.root, "usr/share/ca-certificates/distro"), 0o755)
	os.WriteFile(filepath.Join(c.root, "usr/share/ca-certificates/distro/distro-root.crt"), selfSignedPEM(t, "distro root"), 0o644)
	os.WriteFile(filepath.Join(c.root, "etc/ca-certificates.conf"), []byte("distro/distro-root.crt\n"), 0o644)
	// A Debian trust store as update-ca-certificates leaves it: the bundle
	// exists before join, as on any real machine.
	uca := testenv.NeedCommand(t, "update-ca-certificates", "the sandboxed client's trust store is Debian's")
	os.MkdirAll(filepath.Join(c.root, "etc/ca-certificates/update.d"), 0o755)
	if out, err := exec.Command(uca, "--fresh",
		"--certsconf", filepath.Join(c.root, "etc/ca-certificates.conf"),
		"--certsdir", filepath.Join(c.root, "usr/share/ca-certificates"),
		"--localcertsdir", filepath.Join(c.root, "usr/local/share/ca-certificates"),
		"--etccertsdir", filepath.Join(c.root, "etc/ssl/certs"),
		"--hooksdir", filepath.Join(c.root, "etc/ca-certificates/update.d")).CombinedOutput(); err != nil {
		t.Fatalf("preparing the sandbox trust store: %v\n%s", err, out)
	}
	os.MkdirAll(c.dockerDir, 0o700)
	os.WriteFile(filepath.Join(c.dockerDir, "config.json"), []byte("{\n  \"auths\": {},\n  \"x-user-setting\": {\"keep\": [1, 2]}\n}\n"), 0o600)
	c.env = append(os.Environ(),
		"DOCKER_CONFIG="+c.dockerDir,
		"EDGECR_CONFIG_DIR="+c.credDir,
		"PATH="+filepath.Dir(bin.helper)+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	return c
}

// edgecr runs the agent as this client and returns its combined output.
func (c *client) edgecr(args ...string) (string, error) {
	return c.edgecrEnv(nil, args...)
}

func (c *client) edgecrEnv(extra []string, args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(bin.edgecr, args...)
	cmd.Env = append(append([]string{}, c.env...), extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// snapshot is every file under the client's root and Docker config dir
// (see treeListing). The credential store is checked separately
// (credentials): an emptied store may stay.
func (c *client) snapshot() map[string]string {
	c.t.Helper()
	return treeListing(c.t, c.root, c.dockerDir)
}

// treeListing is every path under the roots with its type, mode, link
// target and bytes.
func treeListing(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, top := range roots {
		filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, _ := e.Info()
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				out[p] = "link:" + l
			case e.IsDir():
				out[p] = "dir:" + fi.Mode().String()
			default:
				b, _ := os.ReadFile(p)
				out[p] = fi.Mode().String() + ":" + string(b)
			}
			return nil
		})
	}
	return out
}

func (c *client) credentials() string {
	b, _ := os.ReadFile(filepath.Join(c.credDir, "credentials.json"))
	return string(b)
}

func diffTrees(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	sort.Strings(d)
	return d
}

// registryTransport trusts only the bundle the agent wrote under the root
// and resolves names through the root's hosts file: what the client
// machine would do, without touching this machine's own files.
func (c *client) registryTransport() *http.Transport {
	c.t.Helper()
	bundle, err := os.ReadFile(filepath.Join(c.root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		c.t.Fatalf("reading the trust bundle the agent wrote: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		c.t.Fatal("the trust bundle holds no certificate")
	}
	hosts := hostsfile.NewFile(filepath.Join(c.root, "etc/hosts"))
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			entries, err := hosts.Lookup(ctx, host)
			if err != nil || len(entries) == 0 {
				return nil, fmt.Errorf("resolving %s through %s: not found (%v)", host, hosts.Path(), err)
			}
			return dialer.DialContext(ctx, network, net.JoinHostPort(entries[0].Addr.String(), port))
		},
		ForceAttemptHTTP2: true,
	}
}

func (c *client) remote() []remote.Option {
	return []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(c.registryTransport())}
}

// token creates a join token on the device.
func (d *device) token(t *testing.T, args ...string) string {
	t.Helper()
	out, e, err := edgecrd(t, append([]string{"token", "create", "--data-dir", d.dataDir, "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, e)
	}
	var tk struct {
		Token       string `json:"token"`
		JoinCommand string `json:"joinCommand"`
	}
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		t.Fatalf("token create -o json: %v\n%s", err, out)
	}
	return tk.Token
}

func (d *device) joinURL() string { return "https://" + d.addr }

// registryRef is a reference through the device's registry host name:
// go-containerregistry is strict https for a host name.
func (d *device) registryRef(t *testing.T, repo string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.info.Endpoint + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestJoinSandboxedPushPullDeleteThroughHelper(t *testing.T) {
	d := startDevice(t, "")
	c := newClient(t)
	before := c.snapshot()
	tok := d.token(t, "--role", "push")

	out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root, "--name", "sandbox")
	if err != nil {
		t.Fatalf("join: %v\n%s", err, out)
	}
	t.Logf("join output:\n%s", out)
	assertNoSecret(t, out, tok, d)

	// The helper found on PATH serves the credential to go-containerregistry.
	t.Setenv("DOCKER_CONFIG", c.dockerDir)
	t.Setenv("EDGECR_CONFIG_DIR", c.credDir)
	t.Setenv("PATH", filepath.Dir(bin.helper)+string(os.PathListSeparator)+os.Getenv("PATH"))
	img, err := random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := d.registryRef(t, "sandbox/app:1")
	if err := remote.Write(ref, img, c.remote()...); err != nil {
		t.Fatalf("push through docker-credential-edgecr: %v", err)
	}
	pulled, err := remote.Image(ref, c.remote()...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatalf("pulled image does not match its digests: %v", err)
	}
	want, _ := img.Digest()
	got, _ := pulled.Digest()
	if got != want {
		t.Fatalf("pulled %s, pushed %s", got, want)
	}
	// Deleting needs the admin role: a push client is refused, admin may.
	dref := d.registryRef(t, "sandbox/app@"+want.String())
	if err := remote.Delete(dref, c.remote()...); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("delete as a push client: %v, want DENIED", err)
	}
	adminOpts := []remote.Option{remote.WithAuth(&authn.Basic{Username: d.info.Username, Password: d.info.Password}), remote.WithTransport(c.registryTransport())}
	if err := remote.Delete(dref, adminOpts...); err != nil {
		t.Fatalf("delete as admin over the agent's trust: %v", err)
	}

	out, err = c.edgecr("status", "--root", c.root)
	if err != nil {
		t.Fatalf("status after join: %v\n%s", err, out)
	}
	assertNoSecret(t, out, tok, d)
	for _, f := range []string{filepath.Join(c.credDir, "credentials.json")} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want 0600", f, err, fi.Mode().Perm())
		}
	}

	out, err = c.edgecr("leave", "--root", c.root)
	if err != nil {
		t.Fatalf("leave: %v\n%s", err, out)
	}
	assertNoSecret(t, out, tok, d)
	if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
		t.Fatalf("join + leave left changes:\n%s", strings.Join(diff, "\n"))
	}
	if creds := c.credentials(); strings.Contains(creds, d.info.Endpoint) {
		t.Fatalf("leave left the credential behind:\n%s", creds)
	}
	clients, _, _ := edgecrd(t, "clients", "ls", "--data-dir", d.dataDir, "-o", "json")
	if !strings.Contains(clients, `"revoked": true`) {
		t.Fatalf("leave did not revoke the client on the device:\n%s", clients)
	}
}

// assertNoSecret fails if the token's secret or a password shows up.
func assertNoSecret(t *testing.T, out, token string, d *device) {
	t.Helper()
	parts := strings.Split(token, ".")
	secret := parts[len(parts)-1]
	if strings.Contains(out, secret) {
		t.Fatal("the token secret appears in the output")
	}
	if strings.Contains(out, d.info.Password) {
		t.Fatal("the admin password appears in the output")
	}
	creds, _ := os.ReadFile(filepath.Join(os.Getenv("EDGECR_CONFIG_DIR"), "credentials.json"))
	var m map[string]map[string]string
	json.Unmarshal(creds, &m)
	for _, e := range m {
		for _, v := range e {
			if len(v) > 30 && strings.Contains(out, v) {
				t.Fatal("a stored credential appears in the output")
			}
		}
	}
}

func TestJoinRefusesAnotherCAPin(t *testing.T) {
	d := startDevice(t, "")
	other := startDevice(t, "")
	c := newClient(t)
	before := c.snapshot()
	// A token minted by another device: its pin is that device's CA. The
	// join URL points at d, as a man in the middle would answer.
	tok := other.token(t)
	out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root)
	if err == nil {
		t.Fatalf("join accepted a device whose CA does not match the pin:\n%s", out)
	}
	if !strings.Contains(out, "pin") {
		t.Fatalf("error does not say the pin did not match:\n%s", out)
	}
	if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
		t.Fatalf("refused join changed the client:\n%s", strings.Join(diff, "\n"))
	}
	// The secret was never sent: the token is still unused on its device.
	ls, _, _ := edgecrd(t, "token", "ls", "--data-dir", other.dataDir, "-o", "json")
	if !strings.Contains(ls, `"used": 0`) {
		t.Fatalf("token was spent:\n%s", ls)
	}
	if strings.Contains(d.stderr.String(), "join refused") {
		t.Fatal("the wrong device saw a join request: the secret left the client")
	}
}

func TestJoinClearErrors(t *testing.T) {
	d := startDevice(t, "")
	t.Run("expired token", func(t *testing.T) {
		c := newClient(t)
		tok := d.token(t, "--ttl", "1s")
		time.Sleep(1100 * time.Millisecond)
		out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root)
		if err == nil || !strings.Contains(out, "expired") {
			t.Fatalf("expired token: %v\n%s", err, out)
		}
	})
	t.Run("used-up token", func(t *testing.T) {
		tok := d.token(t, "--uses", "1")
		c1 := newClient(t)
		if out, err := c1.edgecr("join", d.joinURL(), "--token", tok, "--root", c1.root); err != nil {
			t.Fatalf("first join: %v\n%s", err, out)
		}
		c2 := newClient(t)
		out, err := c2.edgecr("join", d.joinURL(), "--token", tok, "--root", c2.root)
		if err == nil || !strings.Contains(out, "used up") {
			t.Fatalf("used-up token: %v\n%s", err, out)
		}
	})
	t.Run("revoked client", func(t *testing.T) {
		c := newClient(t)
		tok := d.token(t)
		if out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root, "-o", "json"); err != nil {
			t.Fatalf("join: %v\n%s", err, out)
		}
		id := newestClient(t, d.dataDir)
		if _, e, err := edgecrd(t, "clients", "revoke", id, "--data-dir", d.dataDir); err != nil {
			t.Fatalf("revoke: %v %s", err, e)
		}
		out, err := c.edgecr("status", "--root", c.root)
		if err == nil || !strings.Contains(strings.ToLower(out), "revoked") && !strings.Contains(out, "401") {
			t.Fatalf("status of a revoked client: %v\n%s", err, out)
		}
	})
	t.Run("pull-role client pushing", func(t *testing.T) {
		c := newClient(t)
		tok := d.token(t, "--role", "pull")
		if out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root); err != nil {
			t.Fatalf("join: %v\n%s", err, out)
		}
		t.Setenv("DOCKER_CONFIG", c.dockerDir)
		t.Setenv("EDGECR_CONFIG_DIR", c.credDir)
		t.Setenv("PATH", filepath.Dir(bin.helper)+string(os.PathListSeparator)+os.Getenv("PATH"))
		img, _ := random.Image(1024, 1)
		err := remote.Write(d.registryRef(t, "ro/app:1"), img, c.remote()...)
		if err == nil || !strings.Contains(err.Error(), "requires the push role") {
			t.Fatalf("pull-role push: %v, want DENIED saying the push role is needed", err)
		}
	})
}

func TestJoinIsIdempotentAndCrashSafe(t *testing.T) {
	d := startDevice(t, "")
	c := newClient(t)
	before := c.snapshot()
	tok := d.token(t, "--uses", "10")
	for i := range 2 {
		if out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root); err != nil {
			t.Fatalf("join %d: %v\n%s", i, err, out)
		}
	}
	hosts, _ := os.ReadFile(filepath.Join(c.root, "etc/hosts"))
	n := 0
	for l := range strings.Lines(string(hosts)) {
		if !strings.HasPrefix(l, "#") && strings.Contains(l, d.info.Endpoint[:strings.LastIndex(d.info.Endpoint, ":")]) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("hosts file names the registry %d times after two joins:\n%s", n, hosts)
	}
	if !strings.HasPrefix(string(hosts), userHosts) || !strings.Contains(string(hosts), "\r\n# BEGIN edgecr") {
		t.Fatalf("hosts file: foreign lines or CRLF not kept:\n%q", hosts)
	}
	certs, _ := filepath.Glob(filepath.Join(c.root, "usr/local/share/ca-certificates/*"))
	if len(certs) != 1 {
		t.Fatalf("%d certificates in the anchor dir after two joins: %v", len(certs), certs)
	}
	cfg, _ := os.ReadFile(filepath.Join(c.dockerDir, "config.json"))
	if strings.Count(string(cfg), d.info.Endpoint) != 1 || !strings.Contains(string(cfg), "x-user-setting") {
		t.Fatalf("config.json after two joins:\n%s", cfg)
	}
	if out, err := c.edgecr("leave", "--root", c.root); err != nil {
		t.Fatalf("leave: %v\n%s", err, out)
	}
	if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
		t.Fatalf("leave left changes:\n%s", strings.Join(diff, "\n"))
	}

	for _, step := range []string{"bootstrap", "hosts", "trust", "credentials", "verify"} {
		t.Run("SIGKILL after "+step, func(t *testing.T) {
			out, err := c.edgecrEnv([]string{"EDGECR_TEST_CRASH_AFTER=" + step}, "join", d.joinURL(), "--token", tok, "--root", c.root)
			var ee *exec.ExitError
			if err == nil || !asExit(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("join did not die by SIGKILL after %s: %v\n%s", step, err, out)
			}
			if out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root); err != nil {
				t.Fatalf("rerun after the crash: %v\n%s", err, out)
			}
			if out, err := c.edgecr("status", "--root", c.root); err != nil {
				t.Fatalf("status after the rerun: %v\n%s", err, out)
			}
			if out, err := c.edgecr("leave", "--root", c.root); err != nil {
				t.Fatalf("leave: %v\n%s", err, out)
			}
			if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
				t.Fatalf("leave after a crash left changes:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func TestJoinRefusesUsersHostsLineAndMalformedConfig(t *testing.T) {
	d := startDevice(t, "")
	host := d.info.Endpoint[:strings.LastIndex(d.info.Endpoint, ":")]
	t.Run("user's own hosts line", func(t *testing.T) {
		c := newClient(t)
		os.WriteFile(filepath.Join(c.root, "etc/hosts"), []byte(userHosts+"10.1.2.3 "+host+"\r\n"), 0o644)
		before := c.snapshot()
		tok := d.token(t)
		out, err := c.edgecr("join", d.joinURL(), "--token", tok, "--root", c.root)
		if err == nil || !strings.Contains(out, "not managed by edgecr") {
			t.Fatalf("join over the user's line: %v\n%s", err, out)
		}
		if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
			t.Fatalf("refused join changed the client:\n%s", strings.Join(diff, "\n"))
		}
		// Refused before the token was redeemed: it is unused, and no
		// client was made on the device.
		ls, e, err := edgecrd(t, "token", "ls", "--data-dir", d.dataDir, "-o", "json")
		if err != nil {
			t.Fatalf("token ls: %v\n%s", err, e)
		}
		var tokens []struct {
			ID   string `json:"id"`
			Used int    `json:"used"`
		}
		if err := json.Unmarshal([]byte(ls), &tokens); err != nil {
			t.Fatalf("token ls -o json: %v\n%s", err, ls)
		}
		id := strings.Split(tok, ".")[2]
		found := false
		for _, tk := range tokens {
			if tk.ID == id {
				found = true
				if tk.Used != 0 {
					t.Errorf("token %s used %d times by a refused join, want 0", id, tk.Used)
				}
			}
		}
		if !found {
			t.Errorf("token %s not listed:\n%s", id, ls)
		}
		if clients, e, err := edgecrd(t, "clients", "ls", "--data-dir", d.dataDir, "-o", "json"); err != nil || strings.TrimSpace(clients) != "[]" {
			t.Errorf("clients after a refused join: %v\n%s%s", err, clients, e)
		}
	})
	t.Run("malformed config.json", func(t *testing.T) {
		c := newClient(t)
		os.WriteFile(filepath.Join(c.dockerDir, "config.json"), []byte(`{"auths": {`), 0o600)
		before := c.snapshot()
		out, err := c.edgecr("join", d.joinURL(), "--token", d.token(t), "--root", c.root)
		if err == nil || !strings.Contains(out, "config.json") {
			t.Fatalf("join with a malformed config.json: %v\n%s", err, out)
		}
		// Every earlier step was undone; the credential the device issued
		// stays on the device (revocable), nothing stays on the client.
		if diff := diffTrees(before, c.snapshot()); len(diff) != 0 {
			t.Fatalf("failed join left changes:\n%s", strings.Join(diff, "\n"))
		}
	})
}

func selfSignedPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// newestClient is the id of the client that joined last, from `edgecrd
// clients ls -o json` (which lists the most recently seen first).
func newestClient(t *testing.T, dataDir string) string {
	t.Helper()
	out, e, err := edgecrd(t, "clients", "ls", "--data-dir", dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("clients ls: %v %s", err, e)
	}
	var cs []struct {
		ID     string
		Joined time.Time
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) == 0 {
		t.Fatalf("clients ls -o json: %v\n%s", err, out)
	}
	newest := cs[0]
	for _, c := range cs[1:] {
		if !c.Joined.Before(newest.Joined) {
			newest = c
		}
	}
	return newest.ID
}
