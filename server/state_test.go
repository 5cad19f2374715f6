package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// snapshot maps every file in dir to its bytes.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) []string {
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
	return d
}

func TestEnsureIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("box"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Device.Host != "ecr.box.internal" || st.Device.Port != DefaultPort {
		t.Fatalf("device = %+v", st.Device)
	}
	before := snapshot(t, dir)
	// A later start with no flags keeps everything.
	st2, err := Ensure(dir, InitOptions{DefaultName: func() (string, error) { return "other", nil }}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, dir)); len(d) != 0 {
		t.Fatalf("second Ensure changed files: %v", d)
	}
	if st2.CA.Fingerprint() != st.CA.Fingerprint() || st2.Device.Host != st.Device.Host {
		t.Fatal("second Ensure returned different state")
	}
	for name, mode := range map[string]os.FileMode{caKeyFile: 0o600, serverKeyFile: 0o600, adminFile: 0o600, "identities.json": 0o600, deviceFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	pw, _ := st.AdminPassword()
	ids, _ := os.ReadFile(filepath.Join(dir, "identities.json"))
	if strings.Contains(string(ids), pw) {
		t.Fatal("identities.json holds the admin secret in clear")
	}
}

func TestEnsureWithNewIPsReissuesUnderSameCA(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("box"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := st.LoadServerCert()
	o := InitOptions{IPs: []net.IP{net.ParseIP("198.18.0.20"), net.ParseIP("fd00::20")}}
	st2, err := Ensure(dir, o, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := st2.LoadServerCert()
	if cur.Leaf.Equal(old.Leaf) {
		t.Fatal("server certificate not reissued after the IPs changed")
	}
	if st2.CA.Fingerprint() != st.CA.Fingerprint() {
		t.Fatal("CA changed")
	}
	if err := cur.Leaf.CheckSignatureFrom(st.CA.Cert); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"198.18.0.20", "fd00::20", "127.0.0.1"} {
		if err := cur.Leaf.VerifyHostname(ip); err != nil {
			t.Errorf("certificate does not cover %s: %v", ip, err)
		}
	}
	if err := cur.Leaf.VerifyHostname("ecr.box.internal"); err != nil {
		t.Error(err)
	}
	if err := cur.Leaf.VerifyHostname("198.18.0.10"); err == nil {
		t.Error("certificate still covers the old IP")
	}
}

func TestEnsureRefusesBadFlags(t *testing.T) {
	for _, name := range []string{"Bad_Name", "a..b", strings.Repeat("x", 64)} {
		n := name
		_, err := Ensure(t.TempDir(), InitOptions{Name: &n}, time.Now())
		if err == nil || !strings.Contains(err.Error(), "invalid DNS name") {
			t.Errorf("--name %q: err = %v", name, err)
		}
	}
}

func TestCorruptStateIsAnErrorAndNothingIsOverwritten(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(dir string) error
		want   string
	}{
		{"device.json garbage", write(deviceFile, "{not json"), "device.json: corrupt"},
		{"device.json bad host", write(deviceFile, `{"host":"Bad Host","port":31001,"httpSecret":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`), "invalid DNS name"},
		{"device.json unreadable", replaceWithDir(deviceFile), "device.json"},
		{"ca.crt garbage", write(caCertFile, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "loading device CA"},
		{"ca.key missing", remove(caKeyFile), "ca.key missing"},
		{"ca.crt missing", remove(caCertFile), "ca.crt missing"},
		{"CA gone but server cert present", removeBoth(caCertFile, caKeyFile), "ca.crt, ca.key missing"},
		{"ca.key of another CA", otherCAKey, "loading device CA"},
		{"server.crt garbage", write(serverCertFile, "junk"), "loading server certificate"},
		{"server.key missing", remove(serverKeyFile), "server.key missing"},
		{"identities.json garbage", write("identities.json", "[1,2"), "identities.json: corrupt"},
		{"identities.json bad hash", write("identities.json", `{"identities":[{"id":"admin","role":"admin","secretHash":"md5:00"}]}`), "malformed secret hash"},
		{"identities.json bad role", write("identities.json", `{"identities":[{"id":"admin","role":"root","secretHash":"sha256:`+strings.Repeat("0", 64)+`"}]}`), "unknown role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, testOptions("box"), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := c.break_(dir); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := Ensure(dir, testOptions("box"), time.Now())
			if err == nil {
				t.Fatal("Ensure accepted corrupt state")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
			if d := diffSnapshots(before, snapshot(t, dir)); len(d) != 0 {
				t.Fatalf("files changed after the error: %v", d)
			}
		})
	}
}

func write(name, content string) func(string) error {
	return func(dir string) error { return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600) }
}

func remove(name string) func(string) error {
	return func(dir string) error { return os.Remove(filepath.Join(dir, name)) }
}

func removeBoth(a, b string) func(string) error {
	return func(dir string) error {
		return errors.Join(os.Remove(filepath.Join(dir, a)), os.Remove(filepath.Join(dir, b)))
	}
}

func replaceWithDir(name string) func(string) error {
	return func(dir string) error {
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil {
			return err
		}
		return os.Mkdir(p, 0o700)
	}
}

func otherCAKey(dir string) error {
	_, key, err := newCA("other", "internal", nil, time.Now())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, caKeyFile), key, 0o600)
}

func TestAuthenticator(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("box"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(st.Identities())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := st.AdminPassword()
	if role, err := a.Verify(AdminUser, pw); err != nil || role != RoleAdmin {
		t.Fatalf("admin: %v %v", role, err)
	}
	if _, err := a.Verify(AdminUser, pw+"x"); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := a.Verify("ghost", pw); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := st.Identities().Revoke("ghost", time.Now()); !errors.Is(err, ErrNoSuchIdentity) {
		t.Fatalf("revoking unknown: %v", err)
	}
	if err := st.Identities().Revoke(AdminUser, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(AdminUser, pw); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
}

func TestRoles(t *testing.T) {
	for _, c := range []struct {
		have, need Role
		ok         bool
	}{
		{RolePull, RolePull, true}, {RolePull, RolePush, false}, {RolePull, RoleAdmin, false},
		{RolePush, RolePull, true}, {RolePush, RolePush, true}, {RolePush, RoleAdmin, false},
		{RoleAdmin, RolePull, true}, {RoleAdmin, RoleAdmin, true}, {"", RolePull, false}, {RoleAdmin, "", false},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q.Allows(%q) = %v", c.have, c.need, got)
		}
	}
	for _, c := range []struct {
		route, method string
		want          Role
	}{
		{"base", "GET", RolePull}, {"catalog", "GET", RoleAdmin}, {"manifest", "GET", RolePull},
		{"manifest", "HEAD", RolePull}, {"manifest", "PUT", RolePush}, {"manifest", "DELETE", RoleAdmin},
		{"blob", "DELETE", RoleAdmin}, {"blob-upload", "POST", RolePush}, {"blob-upload-chunk", "PATCH", RolePush},
		{"blob-upload-chunk", "DELETE", RolePush}, {"tags", "GET", RolePull},
	} {
		if got := requiredRole(c.route, c.method); got != c.want {
			t.Errorf("requiredRole(%s, %s) = %s, want %s", c.route, c.method, got, c.want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	st, err := Ensure(b.TempDir(), testOptions("box"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	a, _ := NewAuthenticator(st.Identities())
	pw, _ := st.AdminPassword()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Verify(AdminUser, pw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestServeAdoptsInitWhileRunning(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.RenewCheck = 20 * time.Millisecond })
	if _, err := Ensure(ts.state.Dir, InitOptions{IPs: []net.IP{net.ParseIP("198.18.0.99")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := ts.peerCert(t)
		if c.VerifyHostname("198.18.0.99") == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not serve the certificate init issued: IPs %v", c.IPAddresses)
		}
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // several renew checks
	onDisk, err := ts.state.LoadServerCert()
	if err != nil || onDisk.Leaf.VerifyHostname("198.18.0.99") != nil {
		t.Fatalf("serve reissued the certificate with the old IPs (err %v)", err)
	}
}

func TestCAIsNameConstrained(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("box"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(st.CA.Cert)
	sign := func(dns []string, ips []net.IP) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			DNSNames: dns, IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, st.CA.Cert, &key.PublicKey, st.CA.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	verify := func(c *x509.Certificate) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: pool})
		return err
	}
	// What the device serves verifies.
	cur, _ := st.LoadServerCert()
	if err := verify(cur.Leaf); err != nil {
		t.Fatalf("the device's own certificate: %v", err)
	}
	// A stolen ca.key cannot vouch for anyone else.
	if err := verify(sign([]string{"github.com"}, nil)); err == nil {
		t.Fatal("the device CA certifies github.com")
	}
	if err := verify(sign(nil, []net.IP{net.ParseIP("140.82.112.3")})); err == nil {
		t.Fatal("the device CA certifies a public IP it was not given")
	}
	// A later public IP or another domain is refused with the reason.
	before := snapshot(t, dir)
	if _, err := Ensure(dir, InitOptions{IPs: []net.IP{net.ParseIP("203.0.113.7")}}, time.Now()); err == nil || !strings.Contains(err.Error(), "new CA") {
		t.Fatalf("new public IP: %v", err)
	}
	if d := diffSnapshots(before, snapshot(t, dir)); len(d) != 0 {
		t.Fatalf("refused change still wrote: %v", d)
	}
	dom := "example.com"
	if _, err := Ensure(t.TempDir(), InitOptions{Name: ptr("x"), Domain: &dom, IPs: []net.IP{net.ParseIP("203.0.113.7")}}, time.Now()); err != nil {
		t.Fatalf("a public IP given at creation is permitted: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
