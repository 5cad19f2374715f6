package server

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Each state file missing in turn, with the default IPs and with --ip (the
// issue: with --ip a missing device.json was rebuilt from the host name and
// the server certificate reissued), is an error naming that file, and the
// data dir stays byte for byte as it was.
func TestHalfPresentStateIsAnErrorNamingTheFile(t *testing.T) {
	name := "box1"
	flags := map[string]InitOptions{
		"default IPs": {DefaultName: func() (string, error) { return "vm", nil }, DefaultIPs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.2")}, nil }},
		"--ip":        {IPs: []net.IP{net.ParseIP("198.18.0.10")}, DefaultName: func() (string, error) { return "vm", nil }},
		"--name --ip": {Name: &name, IPs: []net.IP{net.ParseIP("198.18.0.10")}},
	}
	for _, missing := range stateFiles {
		for fname, o := range flags {
			t.Run(missing+"/"+fname, func(t *testing.T) {
				dir := t.TempDir()
				if _, err := Ensure(dir, testOptions("box1"), time.Now()); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(filepath.Join(dir, missing)); err != nil {
					t.Fatal(err)
				}
				before := snapshot(t, dir)
				_, err := Ensure(dir, o, time.Now())
				if err == nil {
					t.Fatalf("Ensure accepted a data dir without %s", missing)
				}
				if !errors.Is(err, ErrHalfPresent) || !strings.Contains(err.Error(), missing+" missing") {
					t.Fatalf("error does not name %s as missing: %v", missing, err)
				}
				if d := diffSnapshots(before, snapshot(t, dir)); len(d) != 0 {
					t.Fatalf("files changed after the error: %v", d)
				}
				if _, err := Changes(dir, o, time.Now()); !errors.Is(err, ErrHalfPresent) {
					t.Fatalf("Changes: %v, want half-present", err)
				}
			})
		}
	}
}

// Removing both server.crt and server.key reissues them under the same CA
// (the documented way), and a pre-seeded admin.password alone is a fresh
// dir that keeps that password.
func TestHalfPresentAllowedCases(t *testing.T) {
	dir := t.TempDir()
	st, err := Ensure(dir, testOptions("box1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{serverCertFile, serverKeyFile} {
		os.Remove(filepath.Join(dir, f))
	}
	st2, err := Ensure(dir, InitOptions{}, time.Now())
	if err != nil {
		t.Fatalf("reissue after removing the server pair: %v", err)
	}
	if st2.CA.Fingerprint() != st.CA.Fingerprint() {
		t.Fatal("the CA changed")
	}

	seeded := t.TempDir()
	if err := os.WriteFile(filepath.Join(seeded, adminFile), []byte("seeded-password-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st3, err := Ensure(seeded, testOptions("box2"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := st3.AdminPassword(); pw != "seeded-password-0123456789abcdef" {
		t.Fatalf("admin password %q, want the seeded one", pw)
	}
}

// A first start that stopped half way (crash after device.json) is
// finished by the next start rather than refused: no client can have
// joined a device that never finished initialising.
func TestInterruptedFirstStartIsFinished(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, testOptions("box1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{caCertFile, caKeyFile, serverCertFile, serverKeyFile, identitiesFile, adminFile} {
		os.Remove(filepath.Join(dir, f))
	}
	if _, err := Ensure(dir, testOptions("box1"), time.Now()); !errors.Is(err, ErrHalfPresent) {
		t.Fatalf("without the marker: %v, want half-present", err)
	}
	if err := os.WriteFile(filepath.Join(dir, initIncomplete), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, testOptions("box1"), time.Now()); err != nil {
		t.Fatalf("finishing an interrupted first start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, initIncomplete)); !os.IsNotExist(err) {
		t.Fatalf("marker left behind: %v", err)
	}
	if _, err := Ensure(dir, InitOptions{}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// Changes writes nothing and lists what Ensure would write.
func TestChangesWritesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, testOptions("box1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	got, err := Changes(dir, InitOptions{}, time.Now())
	if err != nil || len(got) != 0 {
		t.Fatalf("no flags: %v, %v; want no changes", got, err)
	}
	port := 31002
	got, err = Changes(dir, InitOptions{Port: &port}, time.Now())
	if err != nil || !slices.Equal(got, []string{deviceFile}) {
		t.Fatalf("--listen :31002: %v, %v; want [device.json]", got, err)
	}
	got, err = Changes(dir, InitOptions{IPs: []net.IP{net.ParseIP("198.18.0.11")}}, time.Now())
	if err != nil || !slices.Equal(got, []string{deviceFile, serverKeyFile, serverCertFile}) {
		t.Fatalf("--ip: %v, %v; want device.json and the server pair", got, err)
	}
	if d := diffSnapshots(before, snapshot(t, dir)); len(d) != 0 {
		t.Fatalf("Changes changed files: %v", d)
	}
}
