package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // the baseline's auth
	"github.com/distribution/distribution/v3/registry/handlers"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// BenchmarkS3Blob: a blob pushed and pulled through edgecrd on a bucket
// and through distribution itself with the same s3 driver and htpasswd,
// on one MinIO on loopback, behind a proxy that counts the object store
// requests. EDGECR_BENCH_BLOB sets the size (default 1GiB). Run it once:
//
//	go test ./server -run '^$' -bench S3Blob -benchtime 1x
func BenchmarkS3Blob(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("EDGECR_BENCH_BLOB"); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	m := kvtest.StartMinIO(b)
	m.SetCredentials(b)
	bucket := m.CreateBucket(b)
	// One counting proxy per registry, so each count is that registry's
	// own traffic (edgecrd's includes its background lease poll).
	target, _ := url.Parse(m.Endpoint)
	counting := func() (*httptest.Server, *splitCounter) {
		c := &splitCounter{}
		p := httptest.NewServer(&httputil.ReverseProxy{
			Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
			Transport: c,
			ErrorLog:  log.New(io.Discard, "", 0),
		})
		b.Cleanup(p.Close)
		return p, c
	}
	proxy, counter := counting()
	dproxy, dcounter := counting()

	// edgecrd, one replica, on s3://bucket/edgecrd through the proxy.
	loc, err := kv.ParseS3URL("s3://" + bucket + "/edgecrd?endpoint=" + proxy.URL)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := EnsureS3(ctx, loc, testOptions("bench"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	srv, err := New(sctx, st, Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReplicaIPs: ips("127.0.0.1")})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	b.Cleanup(func() { cancel(); <-done })
	pw, _ := st.AdminPassword()
	ts := &testServer{state: st}
	edgecrd := target0{name: "edgecrd", base: "https://" + srv.Addr().String(), user: "admin", pw: pw,
		client: &http.Client{Transport: ts.transport()}, counter: counter}

	// distribution, s3 driver on s3://bucket/distribution, htpasswd.
	dloc := *loc
	dloc.Prefix = "distribution"
	dloc.Endpoint = dproxy.URL
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-password"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	htpasswd := filepath.Join(b.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("admin:"+string(hash)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	doc := map[string]any{
		"version": "0.1",
		"log":     map[string]any{"level": "error"},
		"storage": map[string]any{"s3": dloc.DriverParameters(), "redirect": map[string]any{"disable": true}, "delete": map[string]any{"enabled": true}},
		"auth":    map[string]any{"htpasswd": map[string]any{"realm": "bench", "path": htpasswd}},
		"http":    map[string]any{"secret": "bench-secret"},
	}
	y, _ := yaml.Marshal(doc)
	cfg, err := configuration.Parse(bytes.NewReader(y))
	if err != nil {
		b.Fatal(err)
	}
	delete(cfg.Storage, "cache")
	routeDistributionLogs(slog.New(slog.NewTextHandler(io.Discard, nil)))
	dist := httptest.NewUnstartedServer(handlers.NewApp(ctx, cfg))
	dist.EnableHTTP2 = true
	dist.StartTLS()
	b.Cleanup(dist.Close)
	baseline := target0{name: "distribution", base: dist.URL, user: "admin", pw: "bench-password", client: dist.Client(), counter: dcounter}

	var pushRatios, pullRatios []float64
	for i := 0; i < b.N; i++ {
		var push, pull [2]time.Duration
		var pullReqs, pullState, authReqs [2]map[string]int
		// The machine's load changes under a run: alternate which goes first.
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, j := range order {
			tg := []target0{edgecrd, baseline}[j]
			seed := uint64(i*2 + j + 1)
			d, took, err := tg.push(fmt.Sprintf("bench/blob%d", i), size, seed)
			if err != nil {
				b.Fatalf("%s: push: %v", tg.name, err)
			}
			push[j] = took
			tg.counter.take()
			took, err = tg.pull(fmt.Sprintf("bench/blob%d", i), d, size)
			if err != nil {
				b.Fatalf("%s: pull: %v", tg.name, err)
			}
			pull[j] = took
			pullReqs[j], pullState[j] = tg.counter.take()
			for range 10 {
				if err := tg.auth(); err != nil {
					b.Fatalf("%s: GET /v2/: %v", tg.name, err)
				}
			}
			a, st := tg.counter.take()
			for k, v := range st {
				a[k] += v
			}
			authReqs[j] = a
		}
		mbs := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
		b.Logf("run %d, %s first: push edgecrd %.1f MB/s, distribution %.1f MB/s (%.2fx); pull edgecrd %.1f MB/s, distribution %.1f MB/s (%.2fx); "+
			"image requests per pull: edgecrd %d (%s), distribution %d; state requests per pull: edgecrd %d; "+
			"requests per authenticated GET /v2/: edgecrd %.1f, distribution %.1f",
			i+1, []string{"edgecrd", "distribution"}[order[0]],
			mbs(push[0]), mbs(push[1]), push[1].Seconds()/push[0].Seconds(), mbs(pull[0]), mbs(pull[1]), pull[1].Seconds()/pull[0].Seconds(),
			kvtest.Total(pullReqs[0]), kvtest.Format(pullReqs[0]), kvtest.Total(pullReqs[1]), kvtest.Total(pullState[0]),
			float64(kvtest.Total(authReqs[0]))/10, float64(kvtest.Total(authReqs[1]))/10)
		pushRatios = append(pushRatios, push[1].Seconds()/push[0].Seconds())
		pullRatios = append(pullRatios, pull[1].Seconds()/pull[0].Seconds())
		b.ReportMetric(float64(kvtest.Total(pullReqs[0])), "edgecrd-s3-req/pull")
		b.ReportMetric(float64(kvtest.Total(authReqs[0]))/10, "edgecrd-s3-req/auth")
	}
	b.ReportMetric(median(pushRatios), "push-ratio")
	b.ReportMetric(median(pullRatios), "pull-ratio")
	b.Logf("median of %d runs: push ratio %.2fx %v, pull ratio %.2fx %v", b.N, median(pushRatios), pushRatios, median(pullRatios), pullRatios)
}

// target0 is a registry the benchmark pushes to and pulls from.
type target0 struct {
	name, base, user, pw string
	client               *http.Client
	counter              *splitCounter // its object store requests
}

// splitCounter counts a registry's object store requests apart: image
// storage, edgecrd's state under edgecr/state/, and its background poll
// of the GC lease (once a second, whatever the requests).
type splitCounter struct {
	images, state, poll kvtest.Counter
}

func (c *splitCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case strings.Contains(r.URL.Path, "/edgecr/state/gc/lease"):
		return c.poll.RoundTrip(r)
	case strings.Contains(r.URL.Path, "/edgecr/state/"):
		return c.state.RoundTrip(r)
	}
	return c.images.RoundTrip(r)
}

// take returns the image and state counts since the last take (the poll's
// are dropped).
func (c *splitCounter) take() (images, state map[string]int) {
	c.poll.Take()
	return c.images.Take(), c.state.Take()
}

func (t target0) req(method, p string, body io.Reader, size int64) (*http.Response, error) {
	u := p
	if len(p) > 0 && p[0] == '/' {
		u = t.base + p
	}
	r, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		r.ContentLength = size
		r.Header.Set("Content-Type", "application/octet-stream")
	}
	r.SetBasicAuth(t.user, t.pw)
	return t.client.Do(r)
}

// push uploads size bytes of a seeded stream as POST, one PATCH, PUT
// ?digest= (as crane streams a layer).
func (t target0) push(repo string, size int64, seed uint64) (string, time.Duration, error) {
	start := time.Now()
	resp, err := t.req("POST", "/v2/"+repo+"/blobs/uploads/", nil, 0)
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", 0, fmt.Errorf("POST: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8(seedBytes(seed)), size), h)
	resp, err = t.req("PATCH", loc.String(), body, size)
	if err != nil {
		return "", 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", 0, fmt.Errorf("PATCH: %s", resp.Status)
	}
	loc, err = resp.Location()
	if err != nil {
		return "", 0, err
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	resp, err = t.req("PUT", loc.String(), nil, 0)
	if err != nil {
		return "", 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", 0, fmt.Errorf("PUT: %s %s", resp.Status, b)
	}
	return d, time.Since(start), nil
}

// pull GETs the blob and checks its size and digest while streaming.
func (t target0) pull(repo, d string, size int64) (time.Duration, error) {
	start := time.Now()
	resp, err := t.req("GET", "/v2/"+repo+"/blobs/"+d, nil, 0)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return 0, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != size || got != d {
		return 0, fmt.Errorf("pulled %d bytes with digest %s, want %d bytes, %s", n, got, size, d)
	}
	return time.Since(start), nil
}

// auth sends one authenticated GET /v2/.
func (t target0) auth() error {
	resp, err := t.req("GET", "/v2/", nil, 0)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/: %s", resp.Status)
	}
	return nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}
