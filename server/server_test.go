package server

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestChallengeOnMissingOrBadCredentials(t *testing.T) {
	ts := startServer(t, nil)
	cases := []struct {
		name   string
		header string
		reason string
	}{
		{"no auth", "", ""},
		{"wrong password", basic("admin", "not-the-password"), "bad_secret"},
		{"unknown user", basic("nobody", "x"), "unknown_user"},
		{"bearer instead of basic", "Bearer abc", "malformed"},
		{"basic with garbage", "Basic !!!not-base64", "malformed"},
		{"basic without colon", "Basic " + b64("admin"), "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.header != "" {
				hdr["Authorization"] = c.header
			}
			resp := ts.do("GET", "/v2/", "", "", nil, hdr)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="edgecr"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if code := errorCode(t, resp); code != "UNAUTHORIZED" {
				t.Errorf("error code = %q, want UNAUTHORIZED", code)
			}
		})
	}
	metrics := ts.get(t, "/metrics")
	for _, reason := range []string{"bad_secret", "unknown_user", "malformed"} {
		if !strings.Contains(metrics, fmt.Sprintf(`edgecr_auth_failures_total{reason=%q}`, reason)) {
			t.Errorf("metrics lack auth failure reason %s", reason)
		}
	}
}

func TestRolesEnforced(t *testing.T) {
	ts := startServer(t, nil)
	pullPW := ts.addIdentity("puller", RolePull)
	pushPW := ts.addIdentity("pusher", RolePush)

	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ts.ref("team/app:v1"), img, ts.remoteOpts("pusher", pushPW)...); err != nil {
		t.Fatalf("push as push role: %v", err)
	}
	if _, err := remote.Image(ts.ref("team/app:v1"), ts.remoteOpts("puller", pullPW)...); err != nil {
		t.Fatalf("pull as pull role: %v", err)
	}

	resp := ts.do("POST", "/v2/team/app/blobs/uploads/", "puller", pullPW, nil, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("pull-role push: status %d, want 403", resp.StatusCode)
	}
	if code := errorCode(t, resp); code != "DENIED" {
		t.Fatalf("pull-role push: code %q, want DENIED", code)
	}
	err = remote.Write(ts.ref("team/app:v2"), img, ts.remoteOpts("puller", pullPW)...)
	if err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("go-containerregistry push as pull role: err = %v, want DENIED", err)
	}

	d, _ := img.Digest()
	for _, c := range []struct {
		user, pw, method, path string
		want                   int
	}{
		{"pusher", pushPW, "DELETE", "/v2/team/app/manifests/" + d.String(), http.StatusForbidden},
		{"pusher", pushPW, "GET", "/v2/_catalog", http.StatusForbidden},
		{"puller", pullPW, "GET", "/v2/_catalog", http.StatusForbidden},
		{"admin", ts.adminPW, "GET", "/v2/_catalog", http.StatusOK},
		{"admin", ts.adminPW, "DELETE", "/v2/team/app/manifests/" + d.String(), http.StatusAccepted},
	} {
		resp := ts.do(c.method, c.path, c.user, c.pw, nil, nil)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s as %s: status %d, want %d", c.method, c.path, c.user, resp.StatusCode, c.want)
		}
	}
}

func TestRevocationAppliesToNextRequestOnSameConnection(t *testing.T) {
	ts := startServer(t, nil)
	pw := ts.addIdentity("client-1", RolePush)
	resp := ts.do("GET", "/v2/", "client-1", pw, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("before revoke: %d", resp.StatusCode)
	}
	// Another process would do exactly this: a fresh store on the same dir.
	if err := NewIdentityStore(ts.state.Dir).Revoke("client-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp = ts.do("GET", "/v2/", "client-1", pw, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after revoke: status %d, want 401", resp.StatusCode)
	}
	if code := errorCode(t, resp); code != "UNAUTHORIZED" {
		t.Fatalf("after revoke: code %q", code)
	}
}

func TestBruteForceIsThrottled(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.FailureBurst = 5; o.FailureEvery = time.Hour })
	for i := range 5 {
		resp := ts.do("GET", "/v2/", "admin", fmt.Sprintf("guess-%d", i), nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d, want 401", i, resp.StatusCode)
		}
	}
	resp := ts.do("GET", "/v2/", "admin", "guess-6", nil, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th attempt: status %d, want 429", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 429")
	}
	if code := errorCode(t, resp); code != "TOOMANYREQUESTS" {
		t.Errorf("code %q, want TOOMANYREQUESTS", code)
	}
	// The right credential still works: a 256-bit secret is not guessed, and
	// refusing it would let whoever shares the address lock clients out.
	resp = ts.do("GET", "/v2/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("right password while throttled: %d, want 200", resp.StatusCode)
	}
	// The anonymous ping every client sends first is not a failure.
	resp = ts.do("GET", "/v2/", "", "", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous ping while throttled: %d, want 401", resp.StatusCode)
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	ts := startServer(t, nil)
	admin := func(method, path string, body []byte, hdr map[string]string) *http.Response {
		return ts.do(method, path, "admin", ts.adminPW, body, hdr)
	}
	content := []byte("hello edgecr")
	wrong := sha256Digest([]byte("something else"))

	t.Run("blob digest mismatch", func(t *testing.T) {
		resp := admin("POST", "/v2/bad/blob/blobs/uploads/", nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("starting upload: status %d", resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("digest", wrong)
		u.RawQuery = q.Encode()
		resp = admin("PUT", u.RequestURI(), content, map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		if code := errorCode(t, resp); code != "DIGEST_INVALID" {
			t.Fatalf("code %q, want DIGEST_INVALID", code)
		}
		for _, d := range []string{wrong, sha256Digest(content)} {
			resp := admin("HEAD", "/v2/bad/blob/blobs/"+d, nil, nil)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("blob %s after failed upload: status %d, want 404", d, resp.StatusCode)
			}
		}
	})

	t.Run("manifest references missing blobs", func(t *testing.T) {
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":12},"layers":[]}`, wrong)
		resp := admin("PUT", "/v2/bad/manifest/manifests/v1", []byte(m), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		if code := errorCode(t, resp); code != "MANIFEST_BLOB_UNKNOWN" {
			t.Fatalf("code %q, want MANIFEST_BLOB_UNKNOWN", code)
		}
		resp = admin("GET", "/v2/bad/manifest/manifests/v1", nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("manifest after refused put: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("manifest over the size limit", func(t *testing.T) {
		big := []byte(`{"schemaVersion":2,"annotations":{"x":"` + strings.Repeat("a", maxManifestSize) + `"}}`)
		resp := admin("PUT", "/v2/bad/huge/manifests/v1", big, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
		if code := errorCode(t, resp); code != "MANIFEST_INVALID" {
			t.Fatalf("code %q, want MANIFEST_INVALID", code)
		}
	})

	for _, name := range []string{"../x", "a/../../x", "UPPER/case", "Upper", "a//b", "-lead", "x/"} {
		t.Run("repository name "+name, func(t *testing.T) {
			for _, p := range []string{"/v2/" + name + "/manifests/latest", "/v2/" + name + "/blobs/uploads/", "/v2/" + name + "/tags/list"} {
				method := "GET"
				if strings.Contains(p, "uploads") {
					method = "POST"
				}
				req, _ := http.NewRequest(method, ts.url("/"), nil)
				req.URL.Opaque = "//" + ts.addr + p // keep ".." as sent
				req.SetBasicAuth("admin", ts.adminPW)
				resp, err := ts.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s %s: status %d, want 400", method, p, resp.StatusCode)
				}
				if code := errorCode(t, resp); code != "NAME_INVALID" {
					t.Errorf("%s %s: code %q, want NAME_INVALID", method, p, code)
				}
			}
		})
	}

	var cat struct{ Repositories []string }
	resp := admin("GET", "/v2/_catalog", nil, nil)
	json.NewDecoder(resp.Body).Decode(&cat)
	resp.Body.Close()
	if len(cat.Repositories) != 0 {
		t.Fatalf("repositories after bad input: %v, want none", cat.Repositories)
	}
}

func TestLogsNeverContainSecrets(t *testing.T) {
	ts := startServer(t, nil)
	pw := ts.addIdentity("client-x", RolePush)
	img, _ := random.Image(256, 1)
	if err := remote.Write(ts.ref("s/img:1"), img, ts.remoteOpts("client-x", pw)...); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"wrong-" + pw, pw + "x"} {
		resp := ts.do("GET", "/v2/", "client-x", bad, nil, nil)
		resp.Body.Close()
	}
	ts.cancel()
	<-ts.done
	ts.done <- nil
	logs := ts.logs.String()
	if !strings.Contains(logs, `"user":"client-x"`) {
		t.Fatalf("access log lacks the user name; logs:\n%s", logs)
	}
	for _, secret := range []string{pw, ts.adminPW, ts.state.Device.HTTPSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the logs")
		}
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	ts := startServer(t, nil)
	if got := ts.get(t, "/healthz"); got != "ok\n" {
		t.Fatalf("healthz = %q", got)
	}
	img, _ := random.Image(4096, 2)
	if err := remote.Write(ts.ref("m/img:1"), img, ts.remoteOpts("admin", ts.adminPW)...); err != nil {
		t.Fatal(err)
	}
	m := ts.get(t, "/metrics")
	for _, want := range []string{
		`edgecr_http_requests_total{code="201",method="PUT",route="manifest"} 1`,
		`edgecr_http_request_duration_seconds_bucket{method="PUT",route="manifest"`,
		`edgecr_http_request_bytes_total{route="blob-upload-chunk"}`,
		`edgecr_http_response_bytes_total{route="base"}`,
		`edgecr_storage_bytes `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestServerCertificateRenewedUnderSameCA(t *testing.T) {
	var offset atomic.Int64 // nanoseconds added to the wall clock
	ts := startServer(t, func(o *Options) {
		o.RenewCheck = 20 * time.Millisecond
		o.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	ts.clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	first := ts.peerCert(t)
	time.Sleep(100 * time.Millisecond)
	if cur := ts.peerCert(t); cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("certificate replaced while far from expiry")
	}
	// 20 days before expiry: inside the renewal window.
	offset.Store(int64(first.NotAfter.Sub(time.Now()) - 20*24*time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur := ts.peerCert(t)
		if cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if err := cur.CheckSignatureFrom(ts.state.CA.Cert); err != nil {
				t.Fatalf("renewed certificate not signed by the device CA: %v", err)
			}
			if !cur.NotAfter.After(first.NotAfter) {
				t.Fatalf("renewed certificate expires %v, not after %v", cur.NotAfter, first.NotAfter)
			}
			onDisk, err := ts.state.LoadServerCert()
			if err != nil || !onDisk.Leaf.Equal(cur) {
				t.Fatalf("renewed certificate not persisted (err %v)", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("server certificate was not renewed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (ts *testServer) peerCert(t *testing.T) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ts.state.CA.PEM)
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: pool, ServerName: ts.state.Device.Host, Time: ts.clock})
	if err != nil {
		t.Fatalf("TLS to %s as %s: %v", ts.addr, ts.state.Device.Host, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func TestTLSRejectsOldVersionsAndOtherCAs(t *testing.T) {
	ts := startServer(t, nil)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ts.state.CA.PEM)
	if c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	other := startServer(t, nil)
	otherPool := x509.NewCertPool()
	otherPool.AppendCertsFromPEM(other.state.CA.PEM)
	if c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: otherPool, ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("a client trusting another device's CA accepted this device")
	}
}

func (ts *testServer) get(t *testing.T, path string) string {
	t.Helper()
	resp := ts.do("GET", path, "", "", nil, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func basic(u, p string) string { return "Basic " + b64(u+":"+p) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (ts *testServer) peerChain(t *testing.T) []*x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates
}
