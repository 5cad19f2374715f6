package server

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fixture's token and client (testdata/datadir-v0/README.md).
const (
	v0Token  = "edgecr1.c564029ec2be0b9584a6716c8c791c1d6045437f962357441e9042ba3876b3ed.313dea2aad2fbe18.0Qazaheut0CtozrybJnqfVtlWfbTPLVFobXliAmqQYc"
	v0Client = "c-c2ccb160c42f730a"
	v0Secret = "B27ruwMcmXWgVlalnvqH_swkHWGgVTzuWcApxm3QUqY"
)

func copyFixture(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range must(os.ReadDir(src)) {
		if e.Name() == "README.md" {
			continue
		}
		b := must(os.ReadFile(filepath.Join(src, e.Name())))
		mode := fs.FileMode(0o600)
		if strings.HasSuffix(e.Name(), ".crt") {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func fileSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for _, e := range must(os.ReadDir(dir)) {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out[e.Name()] = sha256.Sum256(must(os.ReadFile(filepath.Join(dir, e.Name()))))
		}
	}
	return out
}

// TestDataDirFromPreviousRelease: a data dir written before the state
// store loads, its identities.json converted to shards and every other
// file unchanged; its client and admin still authenticate, and its token
// still joins.
func TestDataDirFromPreviousRelease(t *testing.T) {
	dir := copyFixture(t, filepath.Join("testdata", "datadir-v0"))
	before := fileSums(t, dir)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) // the fixture's certificates are valid
	o := InitOptions{
		DefaultName: func() (string, error) { return "this-host", nil },
		DefaultIPs:  func() ([]net.IP, error) { return nil, nil },
	}
	if ch, err := Changes(dir, o, now); err != nil || len(ch) != 0 {
		t.Fatalf("Changes = %v, %v; want none", ch, err)
	}
	st, err := Ensure(dir, o, now)
	if err != nil {
		t.Fatal(err)
	}
	// Every file but identities.json is unchanged; that one was converted
	// to the identity shards (issue 14) and is now the layout marker,
	// which the previous release refuses instead of reading a part of it.
	after := fileSums(t, dir)
	for name, sum := range before {
		if after[name] != sum && name != identitiesFile {
			t.Errorf("%s changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("new file %s", name)
		}
	}
	marker := must(os.ReadFile(filepath.Join(dir, identitiesFile)))
	if !bytes.Equal(marker, markerBytes) {
		t.Errorf("identities.json after the first start:\n%s", marker)
	}
	if _, err := parseRecords(identitiesFile, marker); err == nil || !strings.Contains(err.Error(), "corrupt file") {
		t.Errorf("the previous release's parser on the marker: %v; want a refusal", err)
	}
	recs, err := st.Identities().Read()
	if err != nil || len(recs.Identities) != 2 || len(recs.Tokens) != 1 || recs.Identities[1].ID != v0Client {
		t.Fatalf("converted identities: %+v, %v", recs, err)
	}
	for name, want := range map[string]fs.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "identities.json": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	if st.Device.Host != "ecr.oldbox.internal" {
		t.Errorf("host %s", st.Device.Host)
	}
	a, err := NewAuthenticator(st.Identities())
	if err != nil {
		t.Fatal(err)
	}
	if role, err := a.Verify(v0Client, v0Secret); err != nil || role != RolePush {
		t.Errorf("the old client: %v, %v", role, err)
	}
	pw, _ := st.AdminPassword()
	if _, err := a.Verify(AdminUser, pw); err != nil {
		t.Errorf("the admin: %v", err)
	}
	p, err := ParseToken(v0Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Redeem(p, "new-laptop", now); err != nil {
		t.Fatalf("the old token: %v", err)
	}
	b := must(os.ReadFile(filepath.Join(dir, tokenDir, p.ID+".json")))
	if !bytes.Contains(b, []byte(`"used": 2`)) || !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("the token after a join:\n%s", b)
	}
}
