package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/time/rate"
)

// auth reads the upstream's credentials from where the configuration
// says; never logged.
func (u *Upstream) auth() (authn.Authenticator, error) {
	c := u.Credentials
	if c == nil {
		return authn.Anonymous, nil
	}
	if c.File != "" {
		b, err := os.ReadFile(c.File)
		if err != nil {
			return nil, fmt.Errorf("reading the credentials of upstream %s: %w", u.Name, err)
		}
		line, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
		user, pw, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("reading the credentials of upstream %s: %s does not hold USER:PASSWORD on its first line", u.Name, c.File)
		}
		return authn.FromConfig(authn.AuthConfig{Username: user, Password: pw}), nil
	}
	user, pw := os.Getenv(c.UsernameEnv), os.Getenv(c.PasswordEnv)
	if user == "" || pw == "" {
		return nil, fmt.Errorf("reading the credentials of upstream %s: environment variables %s and %s must both be set", u.Name, c.UsernameEnv, c.PasswordEnv)
	}
	return authn.FromConfig(authn.AuthConfig{Username: user, Password: pw}), nil
}

// client is what one run (or the pull-through) uses to read an upstream.
type client struct {
	up       *Upstream
	reg      name.Registry
	puller   *remote.Puller
	requests *atomic.Int64 // every request sent to the upstream
}

// Stats count what was sent to an upstream, for the benchmark, the
// metrics and the tests.
type Stats struct {
	Requests atomic.Int64
}

// newClient prepares reads from u: its CA (only that CA, when given, else
// the system roots), its credentials, the rate limit shared by every
// client of u (nil: none) and a request counter.
func newClient(ctx context.Context, u *Upstream, lim *rate.Limiter, stall time.Duration, stats *Stats, wrap func(http.RoundTripper) http.RoundTripper) (*client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 2 * time.Minute
	// Over HTTP/2 every request to the upstream shares one connection: an
	// uplink that goes down leaves a frame write (a WINDOW_UPDATE sent
	// from a body's Read) blocked on the socket with the connection's
	// write lock held, and every stream behind it, which no request's
	// context ends. A write that makes no progress, and a connection that
	// receives nothing and then does not answer a ping, end the
	// connection and with it its streams.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: stall / 2, PingTimeout: stall / 2, WriteByteTimeout: stall}
	if u.CA != "" {
		pem, err := os.ReadFile(u.CA)
		if err != nil {
			return nil, fmt.Errorf("reading the CA of upstream %s: %w", u.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading the CA of upstream %s: %s holds no PEM certificate", u.Name, u.CA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if lim != nil {
		rt = &limitedTransport{next: rt, lim: lim}
	}
	if stats == nil {
		stats = &Stats{}
	}
	if !u.insecure {
		rt = httpsOnly{rt}
	}
	rt = stallTransport{next: rt, after: stall}
	rt = countingTransport{next: rt, n: &stats.Requests}
	if wrap != nil {
		rt = wrap(rt)
	}
	a, err := u.auth()
	if err != nil {
		return nil, err
	}
	var opts []name.Option
	if u.insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.registry, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	p, err := remote.NewPuller(remote.WithTransport(rt), remote.WithAuth(a), remote.WithContext(ctx),
		remote.WithUserAgent("edgecrd-sync"),
		// Retries are ours (retry.go), per blob and manifest, with jitter.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	return &client{up: u, reg: reg, puller: p, requests: &stats.Requests}, nil
}

func (c *client) repo(r string) name.Repository { return c.reg.Repo(r) }

// errStalled: a response body made no progress for the stall timeout (an
// uplink that went down mid-transfer leaves the connection open, and a
// read would wait for TCP to give up, many minutes).
var errStalled = errors.New("upstream stalled: no data received")

// stallTransport ends a request whose response body stops arriving for
// after.
type stallTransport struct {
	next  http.RoundTripper
	after time.Duration
}

func (t stallTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	timer := time.AfterFunc(t.after, func() { cancel(fmt.Errorf("%w for %s", errStalled, t.after)) })
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		timer.Stop()
		cancel(nil)
		if c := context.Cause(ctx); errors.Is(c, errStalled) {
			return nil, c
		}
		return nil, err
	}
	resp.Body = &stallBody{rc: resp.Body, ctx: ctx, timer: timer, after: t.after, cancel: cancel}
	return resp, nil
}

type stallBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	timer  *time.Timer
	after  time.Duration
	cancel context.CancelCauseFunc
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.after)
	}
	if err != nil && err != io.EOF {
		if c := context.Cause(b.ctx); errors.Is(c, errStalled) {
			err = c
		}
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// httpsOnly refuses plain http: go-containerregistry falls back to it for
// loopback and private addresses when https fails, which would send an
// https upstream's credentials in the clear.
type httpsOnly struct{ next http.RoundTripper }

func (t httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing plain http to %s: the upstream's url is https", r.URL.Host)
	}
	return t.next.RoundTrip(r)
}

// newLimiter is the bandwidth limit of u: its rate:, else bps (bytes
// per second of response bodies); nil when neither sets one.
func newLimiter(u *Upstream, bps int64) *rate.Limiter {
	if u.rate != 0 {
		bps = u.rate
	}
	if bps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bps), int(min(bps, 256<<10)))
}

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// limitedTransport paces response bodies to a rate shared by every
// request to the upstream.
type limitedTransport struct {
	next http.RoundTripper
	lim  *rate.Limiter
}

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &limitedBody{rc: resp.Body, lim: t.lim, ctx: r.Context()}
	return resp, nil
}

type limitedBody struct {
	rc  io.ReadCloser
	lim *rate.Limiter
	ctx context.Context
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) > b.lim.Burst() {
		p = p[:b.lim.Burst()]
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		if werr := b.lim.WaitN(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
