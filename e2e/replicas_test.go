package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// replicaIPs are the loopback addresses of the three replicas of the
// acceptance tests (Linux answers on all of 127.0.0.0/8).
var replicaIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// cluster is a MinIO on loopback and edgecrd replicas serving one device
// from one bucket, each `edgecrd serve --storage ...` on an address of
// its own and the same port.
type cluster struct {
	t       testing.TB
	minio   *kvtest.MinIO
	storage string   // the --storage URL
	env     []string // the process environment with MinIO's credentials
	port    int
	extra   []string // more serve flags
	info    deviceInfo
	host    string // the registry host name, what TLS verifies
	ca      *x509.CertPool
	nodes   []*replica
}

// replica is one edgecrd serve process of a cluster.
type replica struct {
	c      *cluster
	i      int
	ip     string
	addr   string // ip:port
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	exited chan struct{}
	uiURL  string
}

// freePortOnAll is a port nothing listens on at any of ips.
func freePortOnAll(t testing.TB, ips []string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatalf("listening on %s: %v", ips[0], err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		free := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every replica address")
	return 0
}

// startCluster starts MinIO with a fresh bucket and n replicas (n <= 3)
// on it, the first initialising the device, and waits until each serves.
// extra are more serve flags for every replica.
func startCluster(t testing.TB, n int, extra ...string) *cluster {
	t.Helper()
	m := kvtest.StartMinIO(t) // skips without the pinned MinIO (fails in CI)
	m.SetCredentials(t)       // for this process's own look into the bucket, and the replicas'
	return startClusterOn(t, m, "s3://"+m.CreateBucket(t)+"/site?endpoint="+m.Endpoint, n, extra...)
}

// startClusterOn starts n replicas on storage, a bucket of m (m's
// credentials already in the environment).
func startClusterOn(t testing.TB, m *kvtest.MinIO, storage string, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, minio: m, storage: storage, extra: extra}
	c.env = os.Environ()
	c.port = freePortOnAll(t, replicaIPs[:n])
	c.nodes = make([]*replica, n)
	for i := range n {
		c.nodes[i] = &replica{c: c, i: i, ip: replicaIPs[i], addr: fmt.Sprintf("%s:%d", replicaIPs[i], c.port)}
		c.start(i)
	}
	out, e, err := c.edgecrd("info", "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd info --storage: %v\n%s", err, e)
	}
	if err := json.Unmarshal([]byte(out), &c.info); err != nil {
		t.Fatalf("parsing edgecrd info -o json: %v\n%s", err, out)
	}
	c.host, _, _ = net.SplitHostPort(c.info.Endpoint)
	c.ca = c.fetchCA(0)
	c.waitSeen(n)
	return c
}

// waitSeen waits until every replica lists n live replicas (GET
// /edgecr/v1/replicas, what a join answers): a replica re-reads the list
// every DefaultReplicaPoll, so on a quiet machine the cluster serves
// before the first replica has seen the last one start, and a join
// through it then names fewer replicas.
func (c *cluster) waitSeen(n int) {
	c.t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.ca}}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for i, r := range c.nodes {
		for {
			var got struct {
				Replicas []string `json:"replicas"`
			}
			resp, err := hc.Get("https://" + r.addr + "/edgecr/v1/replicas")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
			}
			if err == nil && len(got.Replicas) >= n {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("replica %d lists %v (%v) 30 s after the cluster started; want %d replicas", i+1, got.Replicas, err, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// fetchCA downloads the device CA from replica i's join API, as the
// agent does, and checks it against the fingerprint info printed.
func (c *cluster) fetchCA(i int) *x509.CertPool {
	c.t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + c.nodes[i].addr + "/edgecr/v1/ca")
	if err != nil {
		c.t.Fatalf("fetching the CA from replica %d: %v", i+1, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	blk, _ := pem.Decode(b)
	if blk == nil {
		c.t.Fatalf("replica %d's CA endpoint: no PEM: %s", i+1, b)
	}
	sum := sha256.Sum256(blk.Bytes)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != c.info.CAFingerprint {
		c.t.Fatalf("replica %d's CA: fingerprint %s, info says %s", i+1, got, c.info.CAFingerprint)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// edgecrd runs an admin command on the cluster's bucket.
func (c *cluster) edgecrd(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin.edgecrd, append(args, "--storage", c.storage)...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// start starts replica i (again, after kill) and waits until it accepts
// TLS connections.
func (c *cluster) start(i int) {
	c.t.Helper()
	r := c.nodes[i]
	r.stdout, r.stderr, r.exited = &lockedBuffer{}, &lockedBuffer{}, make(chan struct{})
	args := []string{"serve", "--storage", c.storage, "--name", "e2e", "--ip", r.ip, "--listen", r.addr,
		"--ui-listen", r.ip + ":0", "--gc-schedule", "off"}
	r.cmd = exec.Command(bin.edgecrd, append(args, c.extra...)...)
	r.cmd.Env = c.env
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		c.t.Fatalf("starting replica %d: %v", i+1, err)
	}
	cmd, exited := r.cmd, r.exited
	go func() { cmd.Wait(); close(exited) }()
	c.t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-r.exited:
			c.t.Fatalf("replica %d exited during start: %v\nstderr:\n%s", i+1, r.cmd.ProcessState, r.stderr)
		default:
		}
		if conn, err := tls.Dial("tcp", r.addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d did not listen on %s; stderr:\n%s", i+1, r.addr, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A replica binds its registry listener before it has a certificate
	// naming it (other replicas' clients may reach it meanwhile) and prints
	// its addresses once it has one: wait for the web UI's line too.
	for {
		if m := uiURLLine.FindStringSubmatch(r.stdout.String()); m != nil {
			r.uiURL = m[1]
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d printed no web UI address within 60 s; stdout:\n%s\nstderr:\n%s", i+1, r.stdout, r.stderr)
		}
		select {
		case <-r.exited:
			c.t.Fatalf("replica %d exited during start: %v\nstderr:\n%s", i+1, r.cmd.ProcessState, r.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill SIGKILLs replica i.
func (c *cluster) kill(i int) {
	r := c.nodes[i]
	r.cmd.Process.Kill()
	<-r.exited
}

// transport trusts the device CA and verifies the registry host name,
// whichever replica address it dials.
func (c *cluster) transport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.ca, ServerName: c.host}, ForceAttemptHTTP2: true}
}

func (c *cluster) opts(user, pw string) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: user, Password: pw}), remote.WithTransport(c.transport())}
}

func (c *cluster) admin() []remote.Option { return c.opts(c.info.Username, c.info.Password) }

// ref is s on replica i.
func (c *cluster) ref(i int, s string) name.Reference {
	c.t.Helper()
	r, err := name.ParseReference(c.nodes[i].addr + "/" + s)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// pullVerified pulls ref through replica i and checks every blob
// against its digest.
func (c *cluster) pullVerified(i int, ref string, want v1.Hash, opts ...remote.Option) error {
	if opts == nil {
		opts = c.admin()
	}
	img, err := remote.Image(c.ref(i, ref), opts...)
	if err != nil {
		return fmt.Errorf("pulling %s through replica %d: %w", ref, i+1, err)
	}
	if got, err := img.Digest(); err != nil || got != want {
		return fmt.Errorf("pulling %s through replica %d: digest %v (%v), want %v", ref, i+1, got, err, want)
	}
	if err := validate.Image(img); err != nil {
		return fmt.Errorf("pulling %s through replica %d: content does not match its digests: %w", ref, i+1, err)
	}
	return nil
}

// uiPage logs in to replica i's web UI as the admin and returns the page
// at path.
func (c *cluster) uiPage(i int, path string) string {
	c.t.Helper()
	r := c.nodes[i]
	if r.uiURL == "" {
		c.t.Fatalf("replica %d printed no web UI address:\n%s", i+1, r.stdout)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: c.transport(), Jar: jar, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(r.uiURL + "login")
	if err != nil {
		c.t.Fatalf("replica %d web UI: %v", i+1, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(b)
	if m == nil {
		c.t.Fatalf("replica %d: no CSRF token on the login page:\n%s", i+1, b)
	}
	resp, err = hc.PostForm(r.uiURL+"login", url.Values{"csrf": {string(m[1])}, "username": {c.info.Username}, "password": {c.info.Password}, "next": {path}})
	if err != nil {
		c.t.Fatalf("replica %d: logging in: %v", i+1, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = hc.Get(r.uiURL + strings.TrimPrefix(path, "/"))
	if err != nil {
		c.t.Fatalf("replica %d: GET %s: %v", i+1, path, err)
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("replica %d: GET %s: %s\n%s", i+1, path, resp.Status, b)
	}
	return string(b)
}

// registryGet sends GET path to replica i as the admin, bounded by d.
func (c *cluster) registryGet(i int, path string, d time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.nodes[i].addr+path, nil)
	req.SetBasicAuth(c.info.Username, c.info.Password)
	hc := &http.Client{Transport: c.transport()}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// token creates a join token on the cluster's bucket.
func (c *cluster) token(args ...string) string {
	c.t.Helper()
	out, e, err := c.edgecrd(append([]string{"token", "create", "-o", "json"}, args...)...)
	if err != nil {
		c.t.Fatalf("token create --storage: %v\n%s", err, e)
	}
	var tk struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &tk); err != nil || tk.Token == "" {
		c.t.Fatalf("token create -o json: %v\n%s", err, out)
	}
	return tk.Token
}

// Acceptance 1: push through replica 1; pull, digest-verified, through 2
// and 3; a client joined through replica 3 lists it with `edgecr ls` and
// the web UI of replica 3 shows it, with replicas 1 and 2 down.
func TestReplicasPushOnePullEverywhere(t *testing.T) {
	c := startCluster(t, 3)
	img := dockerImage(t)
	want := push(t, c.ref(0, "acc1/app:v1"), img, c.admin())
	idx, _, _ := ociIndex(t)
	wantIdx := push(t, c.ref(0, "acc1/app:multi"), idx, c.admin())
	for _, i := range []int{1, 2} {
		if err := c.pullVerified(i, "acc1/app:v1", want); err != nil {
			t.Fatal(err)
		}
		got, err := remote.Index(c.ref(i, "acc1/app:multi"), c.admin()...)
		if err != nil {
			t.Fatalf("pulling the index through replica %d: %v", i+1, err)
		}
		if d, _ := got.Digest(); d != wantIdx {
			t.Fatalf("index through replica %d: %s, want %s", i+1, d, wantIdx)
		}
		if err := validate.Index(got); err != nil {
			t.Fatalf("index through replica %d: %v", i+1, err)
		}
	}

	cl := newClient(t)
	if out, err := cl.edgecr("join", "https://"+c.nodes[2].addr, "--token", c.token("--role", "pull"), "--root", cl.root); err != nil {
		t.Fatalf("join through replica 3: %v\n%s", err, out)
	}
	c.kill(0)
	c.kill(1)
	tags := cl.lsTags("acc1/app")
	if tags["v1"].Digest != want.String() || tags["multi"].Digest != wantIdx.String() {
		t.Fatalf("edgecr ls through replica 3: %+v; want v1 %s and multi %s", tags, want, wantIdx)
	}
	page := c.uiPage(2, "/images")
	for _, s := range []string{"acc1/app", "v1", "multi", want.String()[:19]} {
		if !strings.Contains(page, s) {
			t.Fatalf("replica 3's Images page does not show %q:\n%s", s, page)
		}
	}
}

// Acceptance 3: 30 joins at once spread over the three replicas on a
// token with 10 uses: exactly 10 succeed, the other 20 get TOKEN_USED_UP.
func TestReplicasConcurrentJoinsSpendEachUseOnce(t *testing.T) {
	c := startCluster(t, 3)
	tok := c.token("--uses", "10", "--role", "pull")
	type outcome struct {
		status int
		code   string
	}
	results := make(chan outcome, 30)
	start := make(chan struct{})
	for k := range 30 {
		go func() {
			hc := &http.Client{Transport: c.transport(), Timeout: 60 * time.Second}
			defer hc.CloseIdleConnections()
			body, _ := json.Marshal(map[string]string{"token": tok, "name": fmt.Sprintf("client-%d", k)})
			<-start
			resp, err := hc.Post("https://"+c.nodes[k%3].addr+"/edgecr/v1/join", "application/json", bytes.NewReader(body))
			if err != nil {
				results <- outcome{code: err.Error()}
				return
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&e)
			results <- outcome{status: resp.StatusCode, code: e.Error.Code}
		}()
	}
	close(start)
	ok, usedUp := 0, 0
	for range 30 {
		r := <-results
		switch {
		case r.status == http.StatusOK:
			ok++
		case r.code == "TOKEN_USED_UP":
			usedUp++
		default:
			t.Errorf("a join got %d %s", r.status, r.code)
		}
	}
	t.Logf("30 joins over 3 replicas on a 10-use token: %d joined, %d TOKEN_USED_UP", ok, usedUp)
	if ok != 10 || usedUp != 20 {
		t.Fatalf("%d joined, %d TOKEN_USED_UP; want 10 and 20", ok, usedUp)
	}
	out, _, err := c.edgecrd("clients", "ls", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var clients []json.RawMessage
	json.Unmarshal([]byte(out), &clients)
	if len(clients) != 10 {
		t.Fatalf("clients ls --storage: %d clients, want 10:\n%s", len(clients), out)
	}
}

// minioDownBound is how long a registry request may take while the object
// store does not answer before the replica answers 503.
const minioDownBound = 30 * time.Second

// Acceptance 6: MinIO killed while the replicas run: registry requests
// that need the store fail with 503 within minioDownBound (no hang, no
// crash); after MinIO is back, everything pulls again, nothing lost.
func TestReplicasObjectStoreDown(t *testing.T) {
	c := startCluster(t, 3)
	img := dockerImage(t)
	want := push(t, c.ref(0, "acc6/app:v1"), img, c.admin())
	c.minio.Stop()
	for i := range c.nodes {
		start := time.Now()
		resp, err := c.registryGet(i, "/v2/acc6/app/manifests/v1", minioDownBound)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("replica %d with MinIO down: %v after %s; want a 503 within %s", i+1, err, took, minioDownBound)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("replica %d with MinIO down: %s %s after %s; want 503", i+1, resp.Status, body, took)
		}
		t.Logf("replica %d with MinIO down: %s in %s: %s", i+1, resp.Status, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
		select {
		case <-c.nodes[i].exited:
			t.Fatalf("replica %d exited with MinIO down:\n%s", i+1, c.nodes[i].stderr)
		default:
		}
	}
	c.minio.Restart(t)
	deadline := time.Now().Add(time.Minute)
	for i := range c.nodes {
		for {
			err := c.pullVerified(i, "acc6/app:v1", want)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a minute after MinIO came back: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// And it takes pushes again.
	want2 := push(t, c.ref(1, "acc6/app:v2"), dockerImage(t), c.admin())
	if err := c.pullVerified(2, "acc6/app:v2", want2); err != nil {
		t.Fatal(err)
	}
}

// gcGrace is the grace of the collections in TestReplicasGCWhilePushing:
// short, so that each round's collection removes the previous rounds'
// untagged images while the pushes of this round reuse their layers.
const gcGrace = 3 * time.Second

// Acceptance 5: `edgecrd gc --storage` beside replica 2 while replicas 1
// and 3 take pushes, 10 rounds, each push reusing layers the collection
// is about to remove: every image pushed pulls digest-verified through
// replica 2. Then a collection SIGKILLed while it holds the lease: the
// next one is refused while the lease lasts, then takes it and completes.
func TestReplicasGCWhilePushing(t *testing.T) {
	c := startCluster(t, 3)
	base := dockerImage(t)
	push(t, c.ref(0, "acc5/base:1"), base, c.admin())
	var prev v1.Layer
	kept := map[string]v1.Hash{}
	gcs, removedManifests, removedBlobs := 0, 0, 0
	for r := range 10 {
		l, err := random.Layer(8<<10, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		// churn:latest is overwritten each round: the last round's
		// image becomes untagged garbage whose layer this round reuses.
		layers := []v1.Layer{l}
		if prev != nil {
			layers = append(layers, prev)
		}
		churn, err := mutate.AppendLayers(base, layers...)
		if err != nil {
			t.Fatal(err)
		}
		prev = l
		keep, err := mutate.AppendLayers(base, l)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(gcGrace) // the last round's image is old enough to go
		errs := make(chan error, 3)
		go func() {
			errs <- remote.Write(c.ref(0, "acc5/churn:latest"), churn, c.admin()...)
		}()
		go func() {
			errs <- remote.Write(c.ref(2, fmt.Sprintf("acc5/keep:%d", r)), keep, c.admin()...)
		}()
		go func() {
			out, e, err := c.edgecrd("gc", "--delete-untagged", "--grace", gcGrace.String(), "-o", "json")
			if err == nil {
				gcs++
				var rep struct {
					DeletedManifests, DeletedBlobs []json.RawMessage
				}
				if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
					err = fmt.Errorf("gc -o json: %v\n%s", jerr, out)
				}
				removedManifests += len(rep.DeletedManifests)
				removedBlobs += len(rep.DeletedBlobs)
			} else if !strings.Contains(e, "another garbage collection is running") {
				err = fmt.Errorf("gc: %v\n%s%s", err, out, e)
			} else {
				err = nil // a collection of the last round still holds it
			}
			errs <- err
		}()
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", r+1, err)
			}
		}
		cd, _ := churn.Digest()
		kept["acc5/churn:latest"] = cd
		kept[fmt.Sprintf("acc5/keep:%d", r)], _ = keep.Digest()
		for ref, want := range kept {
			if err := c.pullVerified(1, ref, want); err != nil {
				t.Fatalf("round %d: %v", r+1, err)
			}
		}
	}
	t.Logf("10 rounds: %d collections ran beside the pushes and removed %d untagged manifests and %d blobs; %d tags pull digest-verified through replica 2",
		gcs, removedManifests, removedBlobs, len(kept))
	if gcs == 0 || removedManifests == 0 {
		t.Fatal("the collections removed nothing: the test did not race them against the pushes")
	}

	// A collection killed while it holds the lease.
	store, err := kv.NewS3(c.loc().KVConfig())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.edgecrd, "gc", "--storage", c.storage, "--delete-untagged", "--grace", gcGrace.String())
	cmd.Env = c.env
	var gcOut lockedBuffer
	cmd.Stdout, cmd.Stderr = &gcOut, &gcOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := store.Get(context.Background(), "gc/lease"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the collection did not take the lease within 30 s:\n%s", gcOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	_, e, err := c.edgecrd("gc", "--delete-untagged", "--grace", gcGrace.String())
	if err == nil || !strings.Contains(e, "another garbage collection is running") {
		t.Fatalf("gc right after a collection was killed holding the lease: %v %s; want it refused while the lease lasts", err, e)
	}
	t.Logf("refused while the killed collection's lease lasts: %s", strings.TrimSpace(e))
	for {
		out, e, err := c.edgecrd("gc", "--delete-untagged", "--grace", gcGrace.String())
		if err == nil {
			t.Logf("the next collection completed %s after the kill:\n%s", time.Since(killed).Round(time.Second), out)
			break
		}
		if !strings.Contains(e, "another garbage collection is running") || time.Since(killed) > 2*time.Minute {
			t.Fatalf("gc after the kill: %v\n%s", err, e)
		}
		time.Sleep(time.Second)
	}
	for ref, want := range kept {
		if err := c.pullVerified(1, ref, want); err != nil {
			t.Fatal(err)
		}
	}
}

// loc is the cluster's storage location.
func (c *cluster) loc() *kv.S3Location {
	c.t.Helper()
	loc, err := kv.ParseS3URL(c.storage)
	if err != nil {
		c.t.Fatal(err)
	}
	return loc
}

// Acceptance 7: a single-node device with images (an image, an index, a
// referrer), a joined client and an unused token, stopped and moved into a
// bucket with `edgecrd migrate`: three replicas on the bucket serve every
// image (pulled digest-verified through each, as the admin and as the
// client), and the token joins a new client through one of them whose
// credential then works on the others.
func TestReplicasAfterMigrate(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	storage := "s3://" + m.CreateBucket(t) + "/site?endpoint=" + m.Endpoint
	d := startDevice(t, "", "--ui-listen", "off")
	images := map[string]v1.Hash{}
	images["acc7/app:v1"] = push(t, d.ref(t, "acc7/app:v1"), dockerImage(t), d.remote())
	idx, _, _ := ociIndex(t)
	images["acc7/app:multi"] = push(t, d.ref(t, "acc7/app:multi"), idx, d.remote())
	subj, err := remote.Get(d.ref(t, "acc7/app:v1"), d.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ocitest.Artifact(subj.Descriptor, "application/vnd.example.sig", "application/octet-stream", []byte("signature"))
	if err != nil {
		t.Fatal(err)
	}
	sd, _ := sig.Digest()
	if err := remote.Write(d.ref(t, "acc7/app@"+sd.String()), sig, d.remote()...); err != nil {
		t.Fatal(err)
	}
	joined := joinAPI(t, "https://"+d.addr, d.transport(), d.token(t, "--role", "pull"), "before-migration")
	unused := d.token(t, "--role", "push")
	d.signal(syscall.SIGTERM)
	<-d.exited

	out, e, err := edgecrd(t, "migrate", "--data-dir", d.dataDir, "--to", storage)
	if err != nil {
		t.Fatalf("edgecrd migrate: %v\n%s%s", err, out, e)
	}
	t.Logf("edgecrd migrate:\n%s", out)
	c := startClusterOn(t, m, storage, 3)
	if c.info.Password != d.info.Password || c.info.CAFingerprint != d.info.CAFingerprint {
		t.Fatal("the replicas serve another device (admin password or CA differ)")
	}
	client := c.opts(joined.Username, joined.Password)
	for i := range c.nodes {
		for _, opts := range [][]remote.Option{c.admin(), client} {
			if err := c.pullVerified(i, "acc7/app:v1", images["acc7/app:v1"], opts...); err != nil {
				t.Fatal(err)
			}
			got, err := remote.Index(c.ref(i, "acc7/app:multi"), opts...)
			if err != nil {
				t.Fatalf("the index through replica %d: %v", i+1, err)
			}
			if dg, _ := got.Digest(); dg != images["acc7/app:multi"] || validate.Index(got) != nil {
				t.Fatalf("the index through replica %d: %s, want %s verified", i+1, dg, images["acc7/app:multi"])
			}
			refs, err := ocitest.ReferrerDigests(c.ref(i, "acc7/app:v1").Context(), images["acc7/app:v1"], opts...)
			if err != nil || len(refs) != 1 || refs[0] != sd.String() {
				t.Fatalf("referrers through replica %d: %v, %v; want %s", i+1, refs, err, sd)
			}
		}
	}
	nc := joinAPI(t, "https://"+c.nodes[1].addr, c.transport(), unused, "after-migration")
	for i := range c.nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := c.pullVerified(i, "acc7/app:v1", images["acc7/app:v1"], c.opts(nc.Username, nc.Password)...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the client that joined with the single node's token: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// joined is a join API answer's credential.
type joined struct{ Username, Password string }

// joinAPI redeems token at the join API of base, as the agent would.
func joinAPI(t *testing.T, base string, tr *http.Transport, token, clientName string) joined {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token, "name": clientName})
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(base+"/edgecr/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("joining at %s: %v", base, err)
	}
	defer resp.Body.Close()
	var j struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &j) != nil || j.Password == "" {
		t.Fatalf("joining at %s: %s %s", base, resp.Status, b)
	}
	return joined{j.Username, j.Password}
}

// helperCredential asks the client's credential helper for host's
// credential, as Docker does.
func (cl *client) helperCredential(host string) (user, secret string) {
	cl.t.Helper()
	cmd := exec.Command(bin.helper, "get")
	cmd.Env = cl.env
	cmd.Stdin = strings.NewReader(host)
	out, err := cmd.Output()
	if err != nil {
		cl.t.Fatalf("docker-credential-edgecr get %s: %v\n%s", host, err, out)
	}
	var cr struct{ Username, Secret string }
	if err := json.Unmarshal(out, &cr); err != nil || cr.Secret == "" {
		cl.t.Fatalf("docker-credential-edgecr get %s: %v\n%s", host, err, out)
	}
	return cr.Username, cr.Secret
}

// Acceptance 2: a client joins through replica 1 (real `edgecr join`);
// its credential works on 2 and 3; `edgecrd clients revoke --storage`
// makes all three refuse it within 2 s.
func TestReplicasRevocationEverywhere(t *testing.T) {
	c := startCluster(t, 3)
	want := push(t, c.ref(0, "acc2/app:v1"), dockerImage(t), c.admin())
	cl := newClient(t)
	if out, err := cl.edgecr("join", "https://"+c.nodes[0].addr, "--token", c.token("--role", "pull"), "--root", cl.root); err != nil {
		t.Fatalf("join through replica 1: %v\n%s", err, out)
	}
	user, secret := cl.helperCredential(c.info.Endpoint)
	for i := range c.nodes {
		if err := c.pullVerified(i, "acc2/app:v1", want, c.opts(user, secret)...); err != nil {
			t.Fatalf("the client joined through replica 1: %v", err)
		}
	}
	if _, e, err := c.edgecrd("clients", "revoke", user); err != nil {
		t.Fatalf("clients revoke --storage: %v\n%s", err, e)
	}
	revoked := time.Now()
	// "Refused within 2 s" means every request sent 2 s or more after the
	// revocation is refused: a request's own latency (a loaded machine)
	// counts for nothing, so it is judged by when it was sent.
	refused := make([]time.Duration, len(c.nodes))
	var wg sync.WaitGroup
	errs := make(chan error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Transport: c.transport(), Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			for {
				sent := time.Now()
				req, _ := http.NewRequest("GET", "https://"+n.addr+"/v2/", nil)
				req.SetBasicAuth(user, secret)
				resp, err := hc.Do(req)
				if err != nil {
					errs <- fmt.Errorf("replica %d: %w", i+1, err)
					return
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusUnauthorized:
					refused[i] = sent.Sub(revoked)
					return
				case sent.Sub(revoked) >= 2*time.Second:
					errs <- fmt.Errorf("replica %d accepted (%s) the revoked client's request sent %v after the revocation", i+1, resp.Status, sent.Sub(revoked).Round(time.Millisecond))
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range refused {
		refused[i] = refused[i].Round(time.Millisecond)
	}
	t.Logf("revoked client refused by the three replicas after %v (bound 2 s)", refused)
}

// failover is a transport that dials addrs (host:port) in order, the next
// one when a dial fails: what Go clients (Docker, containerd, crane) do with
// a name that resolves to several addresses, as the hosts lines join writes
// for a device with replicas do.
func (c *cluster) failover(addrs []string) *http.Transport {
	tr := c.transport()
	d := &net.Dialer{Timeout: 2 * time.Second}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var last error
		for _, a := range addrs {
			conn, err := d.DialContext(ctx, network, a)
			if err == nil {
				return conn, nil
			}
			last = err
		}
		return nil, last
	}
	return tr
}

// hostsAddrs are the addresses the client's hosts file maps host to, in
// the file's order (the order the resolver returns them in).
func (cl *client) hostsAddrs(host string) []string {
	cl.t.Helper()
	b, err := os.ReadFile(filepath.Join(cl.root, "etc/hosts"))
	if err != nil {
		cl.t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(f[1:], host) {
			out = append(out, f[0])
		}
	}
	return out
}

// Acceptance 4: SIGKILL a replica during a loop of pulls by a client
// joined to all three (a sandboxed `edgecr join`: its hosts block maps the
// registry host to every replica, and its credential helper gives the
// credential): the pulls go on through the others. SIGKILL a replica
// during a push: that push fails or completes, no other image is harmed,
// and the restarted replica serves everything again.
func TestReplicasSIGKILL(t *testing.T) {
	c := startCluster(t, 3)
	images := map[string]v1.Hash{}
	for i := range 3 {
		ref := fmt.Sprintf("acc4/app:%d", i)
		images[ref] = push(t, c.ref(0, ref), dockerImage(t), c.admin())
	}
	cl := newClient(t)
	if out, err := cl.edgecr("join", "https://"+c.nodes[0].addr, "--token", c.token("--role", "pull"), "--root", cl.root); err != nil {
		t.Fatalf("join through replica 1: %v\n%s", err, out)
	}
	var addrs []string
	for _, ip := range cl.hostsAddrs(c.host) {
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(c.port)))
	}
	if len(addrs) != len(c.nodes) {
		t.Fatalf("the joined client's hosts file maps %s to %v; want the %d replicas", c.host, addrs, len(c.nodes))
	}
	t.Logf("the joined client reaches %s at %v", c.host, addrs)
	user, secret := cl.helperCredential(c.info.Endpoint)
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: user, Password: secret}), remote.WithTransport(c.failover(addrs))}
	var ok, failed, okAfterKill int
	var killedAt time.Time
	stop := time.Now().Add(12 * time.Second)
	k := 0
	for time.Now().Before(stop) {
		if killedAt.IsZero() && time.Until(stop) < 9*time.Second {
			c.kill(0)
			killedAt = time.Now()
		}
		ref := fmt.Sprintf("acc4/app:%d", k%3)
		k++
		if err := c.pullVerified(0, ref, images[ref], opts...); err != nil {
			failed++
			t.Logf("a pull failed at the kill: %v", err)
			continue
		}
		ok++
		if !killedAt.IsZero() {
			okAfterKill++
		}
	}
	t.Logf("pull loop: %d pulls verified (%d after replica 1 was killed), %d failed", ok, okAfterKill, failed)
	if okAfterKill == 0 || failed > 1 {
		t.Fatalf("%d pulls after the kill, %d failed; want the pulls to go on (at most the one in flight failing)", okAfterKill, failed)
	}
	c.start(0)

	// A push through replica 2, killed in the middle of its upload.
	big, err := random.Image(48<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	progress := make(chan v1.Update, 64)
	go func() {
		pushed <- remote.Write(c.ref(1, "acc4/big:1"), big, append(c.admin(), remote.WithProgress(progress))...)
	}()
	var sent int64
	for u := range progress { // closed when Write returns
		if u.Complete >= 4<<20 && sent == 0 {
			sent = u.Complete
			c.kill(1)
		}
	}
	perr := <-pushed
	if sent == 0 {
		t.Fatalf("the push ended (%v) before 4 MiB were sent: the kill was not in its middle", perr)
	}
	t.Logf("replica 2 killed after %d bytes of the push were sent", sent)
	t.Logf("the push through the killed replica: %v", perr)
	for _, i := range []int{0, 2} {
		for ref, want := range images {
			if err := c.pullVerified(i, ref, want); err != nil {
				t.Fatalf("after the kill during a push: %v", err)
			}
		}
		if perr == nil {
			bd, _ := big.Digest()
			if err := c.pullVerified(i, "acc4/big:1", bd); err != nil {
				t.Fatalf("the push completed before the kill, but: %v", err)
			}
		}
	}
	c.start(1)
	for ref, want := range images {
		if err := c.pullVerified(1, ref, want); err != nil {
			t.Fatalf("the restarted replica 2: %v", err)
		}
	}
	bd := push(t, c.ref(1, "acc4/big:1"), big, c.admin())
	for i := range c.nodes {
		if err := c.pullVerified(i, "acc4/big:1", bd); err != nil {
			t.Fatalf("the push again through the restarted replica: %v", err)
		}
	}
}
