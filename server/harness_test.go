package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testServer is a running edgecrd on 127.0.0.1 with a fresh data dir.
type testServer struct {
	t       *testing.T
	state   *State
	srv     *Server
	addr    string // 127.0.0.1:port
	adminPW string
	logs    *syncBuffer
	client  *http.Client
	cancel  context.CancelFunc
	clock   func() time.Time // what TLS verification takes as now; nil is the wall clock
	done    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testOptions(name string) InitOptions {
	return InitOptions{
		Name:       &name,
		IPs:        []net.IP{net.ParseIP("198.18.0.10")},
		DefaultIPs: func() ([]net.IP, error) { return nil, nil },
	}
}

func startServer(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	return startServerInit(t, nil, mod)
}

func (ts *testServer) transport() *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ts.state.CA.PEM)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
}

func (ts *testServer) url(path string) string { return "https://" + ts.addr + path }

// do sends a request with optional basic auth ("" user = none).
func (ts *testServer) do(method, path, user, pw string, body []byte, hdr map[string]string) *http.Response {
	ts.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, ts.url(path), rd)
	} else {
		req, err = http.NewRequest(method, ts.url(path), nil)
	}
	if err != nil {
		ts.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// addIdentity creates an identity with role and returns its secret.
func (ts *testServer) addIdentity(id string, role Role) string {
	ts.t.Helper()
	secret, err := NewSecret()
	if err != nil {
		ts.t.Fatal(err)
	}
	err = ts.state.Identities().Update(false, func(r *Records) error {
		r.Identities = append(r.Identities, &Identity{ID: id, Name: id, Role: role, SecretHash: HashSecret(secret), Created: time.Now()})
		return nil
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return secret
}

func (ts *testServer) ref(s string) name.Reference {
	ts.t.Helper()
	r, err := name.ParseReference(ts.addr + "/" + s)
	if err != nil {
		ts.t.Fatal(err)
	}
	return r
}

func (ts *testServer) remoteOpts(user, pw string) []remote.Option {
	return []remote.Option{
		remote.WithAuth(&authn.Basic{Username: user, Password: pw}),
		remote.WithTransport(ts.transport()),
	}
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	s := buf.String()
	i := strings.Index(s, `"code":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(`"code":"`):]
	return s[:strings.IndexByte(s, '"')]
}
